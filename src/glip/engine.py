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

Instance masks (`DetectionEngine.detect_with_masks`, a model with GLIPv2's language-aware mask
head): the fused visual features a detection's mask is read from depend on the prompt chunk, so
each chunk's candidates go through NMS and the cap in that chunk's pass and the mask head runs
there on the survivors (boxes in network-input pixels, each box's phrase the mean of the fused
token features over its tokens). Labels never cross chunks, so merging the chunks' survivors and
capping gives the same detections as `detect`; only their R x R mask logits are kept between
passes, never a chunk's features.

Example:
    >>> engine = DetectionEngine(model)  # doctest: +SKIP
    >>> batch = prepare_images(["a.jpg", "b.jpg"], model.config.input)  # doctest: +SKIP
    >>> detections = engine.detect(batch, chunk_class_names(["cat", "dog"]))  # doctest: +SKIP
    >>> detections[0].boxes, detections[0].scores, detections[0].labels  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from glip.images import ImageBatch
from glip.modeling.glip import GLIP, GLIPOutput, ImageFeatures
from glip.modeling.head import HeadOutput
from glip.modeling.mask_head import paste_masks, phrase_features
from glip.modeling.postprocess import Detections, PostProcessor
from glip.prompts import PromptChunk

# Boxes per mask-head call: its pixel features are [boxes, D, R, R] (D = 768 for the official text
# width: 50 boxes x 768 x 28 x 28 floats = 120 MB), whatever the detection cap.
MASK_BOXES_PER_CALL = 50
NO_MASK_HEAD = ("this model has no mask head, so it cannot give instance masks: use a model trained with a mask "
                "head (model config mask_head.enabled), or leave masks off")


class DetectionCancelled(RuntimeError):
    """Raised when the caller's ``cancelled()`` says the work is no longer wanted (a timed-out or
    abandoned request); nothing of the batch is returned."""


@dataclass
class MaskedDetections:
    """Detections of one image with each one's instance mask, before pasting.

    Attributes:
        detections: boxes [N, 4] xyxy in original-image pixels, scores [N], labels [N]; highest score first.
        mask_logits: [N, R, R] mask logits inside each detection's box (``LanguageAwareMaskHead``):
            ``glip.modeling.mask_head.paste_masks(mask_logits, detections.boxes, height, width)``
            gives the masks in the original image.
    """

    detections: Detections
    mask_logits: torch.Tensor

    def __len__(self) -> int:
        return len(self.detections)

    def select(self, keep: torch.Tensor) -> "MaskedDetections":
        return MaskedDetections(self.detections.select(keep), self.mask_logits[keep])

    def encoded_masks(self, height: int, width: int) -> Iterator[tuple[dict, int]]:
        """Each detection's mask pasted into the ``height`` x ``width`` original image, in order, as
        (COCO RLE, area in pixels), one at a time (memory: one image-sized mask whatever their number)."""
        from glip.data.masks import mask_to_rle

        for index in range(len(self)):
            mask = paste_masks(self.mask_logits[index:index + 1], self.detections.boxes[index:index + 1],
                               height, width)[0].cpu().numpy()  # [height, width] bool
            yield mask_to_rle(mask), int(mask.sum())


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
        postprocess = self.postprocessor(max_detections)
        candidates: list[list[Detections]] = [[] for _ in range(num_images)]
        for members, round_chunks, output in self._head_passes(batch, chunks, image_side_once, cancelled):
            for row, (image, chunk) in enumerate(zip(members, round_chunks)):
                candidates[image].append(postprocess.candidates(
                    output.head, output.anchors, chunk.tokens.token_indices, row, batch.image_sizes[image],
                    chunk.phrase_offset))
        return [postprocess.select(Detections.cat(parts)).rescaled(batch.image_sizes[i], batch.original_sizes[i])
                .sorted() for i, parts in enumerate(candidates)]

    @torch.inference_mode()
    def detect_with_masks(self, batch: ImageBatch,
                          chunks: Sequence[PromptChunk] | Sequence[Sequence[PromptChunk]],
                          max_detections: int | None = None, min_score: float = 0.0, image_side_once: bool = True,
                          cancelled: Callable[[], bool] | None = None) -> list[MaskedDetections]:
        """`detect` plus each detection's mask logits (a model with a mask head; see the module docstring).

        Args:
            chunks, max_detections, image_side_once, cancelled: as for `detect`.
            min_score: detections scoring below it are left out, so that no mask is made for them
                (the cap is applied before it, as `detect` followed by a score threshold would).

        Returns:
            per image, `MaskedDetections`: the detections `detect` gives that score at least
            ``min_score``, in the same order, with their mask logits.

        Raises:
            ValueError: the model has no mask head.
        """
        mask_head = self.model.mask_head
        if mask_head is None:
            raise ValueError(NO_MASK_HEAD)
        num_images = len(batch.image_sizes)
        postprocess = self.postprocessor(max_detections)
        image_size = (int(batch.tensor.shape[-2]), int(batch.tensor.shape[-1]))  # the padded input's (H, W)
        found: list[list[Detections]] = [[] for _ in range(num_images)]
        logits: list[list[torch.Tensor]] = [[] for _ in range(num_images)]
        for members, round_chunks, output in self._head_passes(batch, chunks, image_side_once, cancelled):
            for row, (image, chunk) in enumerate(zip(members, round_chunks)):
                # NMS and the cap within the chunk (its labels are its own): a superset of what survives the merge
                kept = postprocess.select(postprocess.candidates(
                    output.head, output.anchors, chunk.tokens.token_indices, row, batch.image_sizes[image],
                    chunk.phrase_offset))
                kept = kept.select(kept.scores >= min_score)
                found[image].append(kept)
                logits[image].append(self._mask_logits(output.head, row, kept, chunk, image_size))
        results = []
        for i in range(num_images):
            merged, merged_logits = Detections.cat(found[i]), torch.cat(logits[i])
            # Each chunk's survivors are already free of overlaps within a label, so a second NMS would
            # keep them all: with one label per row, `select` is the cap and the sort, and its labels are rows.
            rows = postprocess.select(Detections(merged.boxes, merged.scores, torch.arange(
                len(merged), device=merged.scores.device))).labels
            detections = merged.select(rows).rescaled(batch.image_sizes[i], batch.original_sizes[i])
            results.append(MaskedDetections(detections, merged_logits[rows]))
        return results

    def _head_passes(self, batch: ImageBatch, chunks, image_side_once: bool,
                     cancelled: Callable[[], bool] | None) -> Iterator[tuple[list[int], list[PromptChunk], GLIPOutput]]:
        """The head passes of a batch: (member images, their chunk each, the model's output) per pass,
        the image side run once before them when ``image_side_once``."""
        num_images = len(batch.image_sizes)
        per_image = self._per_image_chunks(chunks, num_images)
        features = self.model.encode_images(batch.tensor) if image_side_once else None
        for position in range(max(len(c) for c in per_image)):
            if cancelled is not None and cancelled():
                raise DetectionCancelled("detection cancelled")
            members = [i for i in range(num_images) if position < len(per_image[i])]
            round_chunks = [per_image[i][position] for i in members]
            yield members, round_chunks, self._run_head(batch, features, members, round_chunks)

    def _mask_logits(self, head: HeadOutput, row: int, detections: Detections, chunk: PromptChunk,
                     image_size: tuple[int, int]) -> torch.Tensor:
        """[N, R, R] mask logits of one image's detections (network-input pixels) in one head pass."""
        mask_head = self.model.mask_head
        resolution = mask_head.config.resolution
        if not len(detections):
            return head.text.new_zeros(0, resolution, resolution)
        token_sets = [chunk.tokens.token_indices[label - chunk.phrase_offset] for label in detections.labels.tolist()]
        visual = [level[row:row + 1] for level in head.visual]  # per level [1, C, H_l, W_l]
        text = head.text[row:row + 1]  # [1, L, D]
        parts = []
        for start in range(0, len(detections), MASK_BOXES_PER_CALL):
            stop = start + MASK_BOXES_PER_CALL
            phrases = phrase_features(text, [token_sets[start:stop]])  # [[n, D]]
            parts.append(mask_head(visual, [detections.boxes[start:stop]], phrases, image_size))  # [n, R, R]
        return torch.cat(parts)

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
