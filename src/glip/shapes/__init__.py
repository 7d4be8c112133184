"""The shapes world: procedural scenes of coloured shapes for training and testing GLIP quickly.

``generate_split`` writes one split (images, COCO detection JSON, grounding JSON Lines); the
vocabulary of shapes, colours, synonyms and splits lives in ``glip.shapes.vocabulary``. See
``README.md`` in this folder for the splits and their evaluation protocols.
"""

from glip.shapes.generate import generate_split
from glip.shapes.vocabulary import SPLITS, SYNONYMS

__all__ = ["SPLITS", "SYNONYMS", "generate_split"]
