"""Scoring a model's captions: generate one per image of a caption file, then BLEU-4 and CIDEr-D
against its references (`glip.evaluation.caption_metrics`).

Example:
    >>> report = evaluate_caption_model(predictor, read_caption_sources([("captions.jsonl", None)]))  # doctest: +SKIP
    >>> report.scores.bleu4, report.scores.cider  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from glip.data.captions import CaptionRecord, Id
from glip.evaluation.caption_metrics import CaptionScores, evaluate_captions
from glip.predictor import GLIPPredictor


@dataclass
class CaptionEvaluation:
    scores: CaptionScores
    captions: dict[Id, str]  # image id -> generated caption
    truncated: int  # captions that reached the length limit

    def predictions(self) -> list[dict]:
        """The COCO caption results format: [{"image_id", "caption"}, ...]."""
        return [{"image_id": image_id, "caption": caption} for image_id, caption in self.captions.items()]


def evaluate_caption_model(predictor: GLIPPredictor, records: Sequence[CaptionRecord], beam: int = 1,
                           batch_size: int = 1, max_tokens: int | None = None,
                           progress: bool = False) -> CaptionEvaluation:
    """Caption every record's image with ``predictor`` and score against the record's references."""
    results = predictor.caption([record.image for record in records], beam=beam, max_tokens=max_tokens,
                                batch_size=batch_size, progress=progress)
    captions = {record.image_id: result.caption for record, result in zip(records, results)}
    truncated = sum(result.truncated for result in results)
    return CaptionEvaluation(evaluate_captions(records, captions), captions, truncated)
