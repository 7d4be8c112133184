"""The detection engine: a batch of images and prompt chunks in, detections out.

The one place where the model is run for detection: the predictor (Python API, CLI, server), the
evaluation and the labelling of image-text data all call it. Per batch of images:

1. the image side (Swin + FPN) runs once;
2. the text side and the fused head run once per prompt chunk (a class list longer than the
   token window is split into chunks by `glip.prompts.chunk_prompt_pieces`);
3. the candidates of all chunks of an image are merged, then one class-aware NMS and the per-image
   cap (`glip.modeling.postprocess.PostProcessor.select`) give its detections, in original-image
   pixels, highest score first.

Images may share one list of chunks (a class list) or each have their own (grounding records or
captions: one prompt per image, stacked into one head pass).

Example:
    >>> engine = DetectionEngine(model)  # doctest: +SKIP
    >>> batch = prepare_images(["a.jpg", "b.jpg"], model.config.input)  # doctest: +SKIP
    >>> detections = engine.detect(batch, chunk_class_names(["cat", "dog"]))  # doctest: +SKIP
    >>> detections[0].boxes, detections[0].scores, detections[0].labels  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import torch

from glip.images import ImageBatch
from glip.modeling.glip import GLIP, ImageFeatures
from glip.modeling.postprocess import Detections, PostProcessor
from glip.prompts import PromptChunk


class DetectionCancelled(RuntimeError):
    """Raised when the caller's ``cancelled()`` says the work is no longer wanted (a timed-out or
    abandoned request); nothing of the batch is returned."""


def _select_images(features: ImageFeatures, indices: list[int], batch_size: int) -> ImageFeatures:
    """The image features of a subset of the batch (all of them: no copy)."""
    if indices == list(range(batch_size)):
        return features
    index = torch.tensor(indices, device=features.levels[0].device)
    return ImageFeatures(stages=[s.index_select(0, index) for s in features.stages],
                         levels=[level.index_select(0, index) for level in features.levels])


class DetectionEngine:
    """Runs a `GLIP` model over image batches and prompt chunks.

    Args:
        model: the detector, already on its device and in eval mode.
        trim_text_padding: run the text side on the chunk's real tokens only instead of the full
            padded window. Padding never influences real tokens (it is masked everywhere), so the
            detections are the same up to float rounding, and the fused head gets much cheaper.
    """

    def __init__(self, model: GLIP, trim_text_padding: bool = True) -> None:
        self.model = model
        self.trim_text_padding = trim_text_padding

    @property
    def device(self) -> torch.device:
        return self.model.head.bias_lang.device

    def postprocessor(self, max_detections: int | None = None) -> PostProcessor:
        """The model's post-processing, with the per-image cap replaced when given (>= 1)."""
        config = self.model.config.postprocess
        if max_detections is not None:
            if max_detections < 1:
                raise ValueError(f"max_detections must be at least 1, got {max_detections}")
            config = dataclasses.replace(config, detections_per_image=max_detections)
        return PostProcessor(config)

    @torch.inference_mode()
    def detect(self, batch: ImageBatch, chunks: Sequence[PromptChunk] | Sequence[Sequence[PromptChunk]],
               max_detections: int | None = None, image_side_once: bool = True,
               cancelled: Callable[[], bool] | None = None) -> list[Detections]:
        """Detections of each image of ``batch`` (on the model's device), all scores kept.

        Args:
            chunks: one list of chunks for every image (a class list), or one list per image.
            max_detections: per image, after NMS (default: the model config's).
            image_side_once: False re-runs the whole model per chunk, as the official LVIS
                evaluation does (same detections, slower).
            cancelled: polled before each head pass; True raises `DetectionCancelled`.

        Returns:
            per image, `Detections` in original-image pixels, highest score first; labels index the
            concatenated phrases of that image's chunks.
        """
        num_images = len(batch.image_sizes)
        per_image = self._per_image_chunks(chunks, num_images)
        postprocess = self.postprocessor(max_detections)
        features = self.model.encode_images(batch.tensor) if image_side_once else None
        candidates: list[list[Detections]] = [[] for _ in range(num_images)]
        for position in range(max(len(c) for c in per_image)):
            if cancelled is not None and cancelled():
                raise DetectionCancelled("detection cancelled")
            members = [i for i in range(num_images) if position < len(per_image[i])]
            round_chunks = [per_image[i][position] for i in members]
            output = self._run_head(batch, features, members, round_chunks)
            for row, (image, chunk) in enumerate(zip(members, round_chunks)):
                candidates[image].append(postprocess.candidates(
                    output.head, output.anchors, chunk.tokens.token_indices, row, batch.image_sizes[image],
                    chunk.phrase_offset))
        return [postprocess.select(Detections.cat(parts)).rescaled(batch.image_sizes[i], batch.original_sizes[i])
                .sorted() for i, parts in enumerate(candidates)]

    @staticmethod
    def _per_image_chunks(chunks, num_images: int) -> list[list[PromptChunk]]:
        if not chunks:
            raise ValueError("no prompt chunks given")
        if isinstance(chunks[0], PromptChunk):
            return [list(chunks)] * num_images
        if len(chunks) != num_images:
            raise ValueError(f"{len(chunks)} chunk lists for {num_images} images: give one list per image")
        if any(not image_chunks for image_chunks in chunks):
            raise ValueError("an image has no prompt chunk")
        return [list(image_chunks) for image_chunks in chunks]

    def _run_head(self, batch: ImageBatch, features: ImageFeatures | None, members: list[int],
                  chunks: list[PromptChunk]):
        """One pass of the text side and the head for ``members`` (image indices), one chunk each."""
        num_images = len(batch.image_sizes)
        shared = all(chunk is chunks[0] for chunk in chunks)
        tokens = [chunks[0].tokens] if shared else [chunk.tokens for chunk in chunks]
        length = max(t.num_tokens for t in tokens) if self.trim_text_padding else tokens[0].input_ids.shape[0]
        ids = torch.stack([t.input_ids[:length] for t in tokens]).to(self.device)  # [1 or B', L]
        mask = torch.stack([t.attention_mask[:length] for t in tokens]).to(self.device)  # [1 or B', L]
        if features is not None:
            return self.model(batch.tensor, ids, mask, image_features=_select_images(features, members, num_images))
        images = batch.tensor if len(members) == num_images else batch.tensor[members]
        return self.model(images, ids, mask)
