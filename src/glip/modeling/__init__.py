"""Network modules of GLIP."""

from glip.modeling.glip import GLIP, GLIPOutput, ImageFeatures

__all__ = ["GLIP", "GLIPOutput", "ImageFeatures"]
