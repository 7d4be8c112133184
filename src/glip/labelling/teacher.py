"""The teacher: boxes the noun phrases of image-text pairs with a GLIP model, a batch at a time.

One call of :meth:`Teacher.label` is one pass of the detection engine over a batch of pairs (one
prompt per image; a caption longer than the token window runs as windows of its phrases,
`glip.prompts.chunk_caption_prompt`). Every box whose score is strictly above ``min_score`` is kept
for its phrase, as the official self-training did (``CAPTION_CONF`` 0.5, no extra NMS); optional
per-phrase NMS and a cap per phrase thin them; a pair with fewer than ``min_boxes`` boxes is dropped.

The batch function holds no state between calls, so a Ray ``map_batches`` actor can own a `Teacher`
and call ``label`` on each batch as the local worker processes do.

Example:
    >>> teacher = Teacher.from_weights(None, min_score=0.5)  # doctest: +SKIP
    >>> [r.status for r in teacher.label(pairs)]  # doctest: +SKIP
    ['kept', 'dropped', 'error']
"""

from __future__ import annotations

import functools
import io
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torchvision.ops import nms

from glip.images import DEFAULT_MAX_MEGAPIXELS, ImageError, batch_images, load_image, preprocess
from glip.labelling.phrases import NoNounPhrase, noun_phrases, require_parser
from glip.labelling.sources import Pair
from glip.modeling.glip import GLIP
from glip.modeling.postprocess import Detections
from glip.predictor import GLIPPredictor
from glip.prompts import Prompt, PromptChunk, build_caption_prompt, chunk_caption_prompt

# The engine's per-image cap after its NMS: high enough never to cut a box above any useful
# threshold (the candidates are already bounded by the model's pre-NMS top-n per level and chunk).
ENGINE_CAP = 100_000
_FORMAT_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif"}


@dataclass
class LabelResult:
    """What the teacher made of one pair.

    ``status``: ``"kept"`` (at least ``min_boxes`` boxes), ``"dropped"`` (fewer) or ``"error"``
    (``error`` says why: bad image, missing caption, no noun phrase). ``regions`` are ODVG regions,
    one per box: ``{"bbox": [x1, y1, x2, y2] (original pixels), "phrase", "tokens_positive": [[s, e]],
    "score"}``, in phrase order, each phrase's boxes by score descending.
    """

    pair: Pair
    status: str
    error: str | None = None
    width: int | None = None
    height: int | None = None
    phrases: int = 0
    regions: list[dict] = field(default_factory=list)
    image_extension: str | None = None  # of the encoded image bytes ("jpg", "png", ...)


@dataclass
class _Prepared:
    index: int
    image: torch.Tensor  # [3, H, W] preprocessed
    size: tuple[int, int]  # original (h, w)
    prompt: Prompt
    chunks: list[PromptChunk]
    extension: str | None


class Teacher:
    """A GLIP model that labels image-text pairs.

    Args:
        predictor: a `GLIPPredictor`, or a `GLIP` model (put on ``device``).
        min_score: boxes with a score strictly above it are kept.
        nms: IoU of an extra NMS among the boxes of one phrase (None: none, as the official pipeline).
        max_boxes_per_phrase: most boxes kept per phrase, highest scores first (None: no cap).
        min_boxes: a pair with fewer boxes in all is dropped.
        max_pixels: largest image accepted (width x height), checked before decoding.
    """

    def __init__(self, predictor: GLIPPredictor | GLIP, min_score: float = 0.5, nms: float | None = None,
                 max_boxes_per_phrase: int | None = None, min_boxes: int = 1,
                 max_pixels: int | None = int(DEFAULT_MAX_MEGAPIXELS * 1_000_000),
                 device: str | torch.device | None = None) -> None:
        if not 0.0 <= min_score < 1.0:
            raise ValueError(f"min_score must be within [0, 1), got {min_score}")
        if nms is not None and not 0.0 < nms <= 1.0:
            raise ValueError(f"nms must be an IoU within (0, 1], got {nms}")
        if max_boxes_per_phrase is not None and max_boxes_per_phrase < 1:
            raise ValueError(f"max_boxes_per_phrase must be at least 1, got {max_boxes_per_phrase}")
        if min_boxes < 0:
            raise ValueError(f"min_boxes must be at least 0, got {min_boxes}")
        require_parser()
        self.predictor = predictor if isinstance(predictor, GLIPPredictor) else GLIPPredictor(predictor, device)
        self.min_score = min_score
        self.nms = nms
        self.max_boxes_per_phrase = max_boxes_per_phrase
        self.min_boxes = min_boxes
        self.max_pixels = max_pixels

    @classmethod
    def from_weights(cls, weights: str | os.PathLike | None, device: str | torch.device | None = None,
                     **settings) -> "Teacher":
        """A teacher from a model file (None: the embedded default model)."""
        return cls(GLIPPredictor.from_pretrained(weights, device=device), **settings)

    @functools.cached_property
    def fingerprint(self) -> str:
        """The model's weights fingerprint (`glip.adapters.model_fingerprint`)."""
        from glip.adapters import model_fingerprint

        return model_fingerprint(self.predictor.model)

    def label(self, pairs: Sequence[Pair]) -> list[LabelResult]:
        """Label a batch of pairs (one engine pass); one result per pair, in order."""
        results: list[LabelResult | None] = [None] * len(pairs)
        prepared: list[_Prepared] = []
        for index, pair in enumerate(pairs):
            item = self._prepare(index, pair)
            if isinstance(item, LabelResult):
                results[index] = item
            else:
                prepared.append(item)
        if prepared:
            config = self.predictor.model.config.input
            batch = batch_images([p.image for p in prepared], [p.size for p in prepared],
                                 config.size_divisibility).to(self.predictor.device)
            detections = self.predictor.engine.detect(batch, [p.chunks for p in prepared], max_detections=ENGINE_CAP)
            for item, found in zip(prepared, detections):
                results[item.index] = self._result(pairs[item.index], item, found.select(found.scores > self.min_score))
        return results  # type: ignore[return-value]

    # ------------------------------------------------------------------ steps
    def _prepare(self, index: int, pair: Pair) -> _Prepared | LabelResult:
        try:
            image, extension = self._decode(pair)
        except ImageError as error:
            return LabelResult(pair, "error", str(error))
        if not isinstance(pair.caption, str) or not pair.caption.strip():
            return LabelResult(pair, "error", "missing caption")
        try:
            spans = noun_phrases(pair.caption)
            prompt = build_caption_prompt(pair.caption, spans)
            chunks = chunk_caption_prompt(prompt, self.predictor.max_length, self.predictor.tokenizer)
        except (NoNounPhrase, ValueError) as error:
            return LabelResult(pair, "error", str(error))
        tensor = preprocess(image, self.predictor.model.config.input)
        return _Prepared(index, tensor, (image.height, image.width), prompt, chunks, extension)

    def _decode(self, pair: Pair) -> tuple[Image.Image, str | None]:
        """The RGB image of a pair and the extension of its encoded bytes (None for a file)."""
        label = f"{pair.shard}/{pair.key}"
        if isinstance(pair.image, Path):
            return load_image(pair.image, name=f"{label} ({pair.image})", max_pixels=self.max_pixels), None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                opened = Image.open(io.BytesIO(pair.image))
            except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
                raise ImageError(f"{label}: not an image or corrupt ({error})") from None
        detected = opened.format or "img"
        extension = pair.image_extension or _FORMAT_EXTENSIONS.get(detected, detected.lower())
        return load_image(opened, name=label, max_pixels=self.max_pixels), extension

    def _result(self, pair: Pair, item: _Prepared, kept: Detections) -> LabelResult:
        height, width = item.size
        regions: list[dict] = []
        for phrase_index, (text, spans) in enumerate(zip(item.prompt.phrases, item.prompt.spans)):
            mine = kept.select(kept.labels == phrase_index)
            boxes, scores = mine.boxes.float().cpu(), mine.scores.float().cpu()
            if self.nms is not None and len(scores):
                order = nms(boxes, scores, self.nms)
                boxes, scores = boxes[order], scores[order]
            if self.max_boxes_per_phrase is not None:
                boxes, scores = boxes[:self.max_boxes_per_phrase], scores[:self.max_boxes_per_phrase]
            for box, score in zip(boxes.tolist(), scores.tolist()):
                x1, y1, x2, y2 = (round(min(max(v, 0.0), limit), 2)
                                  for v, limit in zip(box, (width, height, width, height)))
                if x2 <= x1 or y2 <= y1:
                    continue  # degenerate once clipped and rounded: not a box the trainer could use
                regions.append({"bbox": [x1, y1, x2, y2], "phrase": text,
                                "tokens_positive": [list(span) for span in spans], "score": score})
        status = "kept" if len(regions) >= self.min_boxes else "dropped"
        return LabelResult(pair, status, None, width, height, len(item.prompt.phrases), regions, item.extension)

