"""Running a model over an evaluation dataset: batched, sharded over processes, with a progress bar.

Both run the detection engine (`glip.engine.DetectionEngine`) and keep every (box, name) pair the
AP protocols need. Detection: the categories' prompt is split into chunks (`glip.evaluation.prompts`);
per batch of images the image side (Swin + FPN) runs once and each chunk runs only the text side and
the fused head; candidates of all chunks go through one class-aware NMS and the per-image cap.
``reuse_image_features=False`` re-runs the whole model per chunk, as the official LVIS evaluation
does; the detections are the same, only slower. ``masks=True`` (a model with a mask head) adds each
detection's instance mask, for mask AP.

Grounding: each record has its own caption, so a batch stacks one prompt per image.

Images are read as the annotations see them: with the EXIF orientation applied (as at inference)
unless the file's stored size is the size the annotation file records and the rotated one is not.
An image whose size matches neither is reported (with the count of such images) after the run,
since its boxes would be scaled wrongly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from glip.evaluation.common import EvaluationError, examples
from glip.evaluation.detection_data import DetectionDataset, ImageInfo
from glip.distributed import DistributedContext
from glip.engine import NO_MASK_HEAD
from glip.evaluation.grounding_data import GroundingDataset, GroundingRecord
from glip.evaluation.predictions import xyxy_to_detection_bbox, xyxy_to_grounding_bbox
from glip.evaluation.prompts import build_category_chunks
from glip.images import load_image, prepare_images
from glip.predictor import GLIPPredictor
from glip.prompts import Prompt, PromptChunk, tokenize_prompt

logger = logging.getLogger(__name__)


@dataclass
class InferenceOutput:
    """Predictions in dataset order (on every rank) and how long the run took."""

    predictions: list[dict]
    timing: dict


def _load_eval_image(path: Path, width: int | None, height: int | None) -> tuple[np.ndarray, str | None]:
    """RGB pixels in the annotations' frame, and a fault message when that frame is unknown."""
    image = load_image(path)
    if width is None or height is None or image.size == (width, height):
        return np.asarray(image), None
    with Image.open(path) as stored:
        if stored.size == (width, height):
            return np.asarray(load_image(np.asarray(stored.convert("RGB")))), None
    return np.asarray(image), f"{path.name} is {image.width}x{image.height}, recorded {width}x{height}"


def _run_sharded(items: Sequence, batch_size: int, context: DistributedContext, progress: bool, desc: str,
                 run_batch: Callable[[list], tuple[list[dict], list[str]]]) -> tuple[list[dict], list[str], dict]:
    """Run ``run_batch`` on this rank's batches, gather, and put predictions back in dataset order."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    batches = [list(items[start:start + batch_size]) for start in range(0, len(items), batch_size)]
    mine = context.shard(len(batches))
    outputs: list[tuple[int, list[dict], list[str]]] = []
    error: str | None = None
    started = time.perf_counter()
    with tqdm(total=sum(len(batches[b]) for b in mine), desc=desc, unit="img", dynamic_ncols=True,
              disable=not (progress and context.is_main)) as bar:
        for index in mine:
            try:
                predictions, faults = run_batch(batches[index])
            except (EvaluationError, ValueError, OSError) as exc:
                if not context.is_distributed:
                    raise
                error = str(exc)  # raised on every rank after the gather, so that none waits forever
                break
            outputs.append((index, predictions, faults))
            bar.update(len(batches[index]))
    seconds = time.perf_counter() - started
    gathered = context.all_gather({"outputs": outputs, "seconds": seconds, "error": error})
    errors = [part["error"] for part in gathered if part["error"]]
    if errors:
        raise EvaluationError(errors[0])
    ordered = sorted((o for part in gathered for o in part["outputs"]), key=lambda o: o[0])
    predictions = [p for _, batch_predictions, _ in ordered for p in batch_predictions]
    faults = [f for _, _, batch_faults in ordered for f in batch_faults]
    wall = max(part["seconds"] for part in gathered)
    timing = {"images": len(items), "seconds": round(wall, 3),
              "images_per_second": round(len(items) / wall, 3) if wall > 0 else None,
              "seconds_per_image": round(wall / len(items), 4) if items else None,
              "processes": context.world_size, "batch_size": batch_size}
    return predictions, faults, timing


def _raise_size_faults(faults: list[str], source: str) -> None:
    if faults:
        raise EvaluationError(
            f"{source}: {len(faults)} image{'s' if len(faults) > 1 else ''} without the size the annotation "
            f"file records, so boxes cannot be compared ({examples(faults)})"
        )


@torch.inference_mode()
def predict_detections(predictor: GLIPPredictor, dataset: DetectionDataset, images: Sequence[ImageInfo] | None = None,
                       batch_size: int = 1, max_detections: int = 100, reuse_image_features: bool = True,
                       progress: bool = False, context: DistributedContext | None = None,
                       masks: bool = False) -> InferenceOutput:
    """COCO-results predictions of the model for ``images`` (default: all the dataset's images).

    Args:
        max_detections: per image, over all categories (after NMS).
        reuse_image_features: run the image side once per batch (False: once per prompt chunk).
        context: the process group under torchrun; every rank gets all predictions back.
        masks: also each detection's instance mask from the model's mask head, in the same forward
            pass (`glip.engine.DetectionEngine.detect_with_masks`, the same detections), as
            ``segmentation`` (COCO RLE of the image's size).

    Raises:
        EvaluationError: ``masks`` and the model has no mask head.
    """
    context = context or DistributedContext()
    images = list(dataset.images if images is None else images)
    if not images:
        raise EvaluationError(f"{dataset.source}: no images to run the model on")
    if masks and predictor.model.mask_head is None:
        raise EvaluationError(NO_MASK_HEAD.replace("leave masks off", "evaluate boxes alone"))
    chunks = build_category_chunks([c.prompt for c in dataset.categories], predictor.tokenizer, predictor.max_length)
    category_ids = dataset.category_ids

    def run_batch(batch_images: list[ImageInfo]) -> tuple[list[dict], list[str]]:
        loaded = [_load_eval_image(dataset.image_path(i), i.width, i.height) for i in batch_images]
        batch = prepare_images([pixels for pixels, _ in loaded], predictor.model.config.input).to(predictor.device)
        if masks:
            found = predictor.engine.detect_with_masks(batch, chunks, max_detections,
                                                       image_side_once=reuse_image_features)
            per_image = [item.detections for item in found]
        else:
            per_image = predictor.engine.detect(batch, chunks, max_detections, image_side_once=reuse_image_features)
        predictions = []
        for index, (image, detections) in enumerate(zip(batch_images, per_image)):
            records = [{"image_id": image.id, "category_id": category_ids[int(label)],
                        "bbox": xyxy_to_detection_bbox(box), "score": float(score)}
                       for box, score, label in zip(detections.boxes.tolist(), detections.scores.tolist(),
                                                    detections.labels.tolist())]
            if masks:
                height, width = batch.original_sizes[index]  # the annotations' frame (see _load_eval_image)
                for record, (rle, _) in zip(records, found[index].encoded_masks(height, width)):
                    record["segmentation"] = rle
            predictions += records
        return predictions, [fault for _, fault in loaded if fault]

    predictions, faults, timing = _run_sharded(images, batch_size, context, progress, dataset.name, run_batch)
    _raise_size_faults(faults, dataset.source)
    timing.update(prompt_chunks=len(chunks), reuse_image_features=reuse_image_features,
                  device=str(predictor.device), max_detections=max_detections, masks=masks)
    return InferenceOutput(predictions, timing)


def _record_chunk(predictor: GLIPPredictor, record: GroundingRecord, source: str) -> PromptChunk:
    prompt = Prompt(record.caption, [record.phrase_text(i) for i in range(record.num_phrases)], record.phrase_spans)
    try:
        return PromptChunk(prompt, tokenize_prompt(prompt, predictor.max_length, predictor.tokenizer), 0)
    except ValueError as error:
        raise EvaluationError(f"{source}: record {record.id!r}: {error}") from None


@torch.inference_mode()
def predict_grounding(predictor: GLIPPredictor, dataset: GroundingDataset,
                      records: Sequence[GroundingRecord] | None = None, batch_size: int = 1,
                      max_detections: int = 100, progress: bool = False,
                      context: DistributedContext | None = None) -> InferenceOutput:
    """Grounding predictions (``phrase_index`` per box) for each record's caption and phrases."""
    context = context or DistributedContext()
    records = [r for r in (dataset.records if records is None else records) if r.num_phrases > 0]
    if not records:
        raise EvaluationError(f"{dataset.source}: no record with phrases to run the model on")

    def run_batch(batch_records: list[GroundingRecord]) -> tuple[list[dict], list[str]]:
        chunks = [[_record_chunk(predictor, r, dataset.source)] for r in batch_records]
        loaded = [_load_eval_image(dataset.image_path(r), r.width, r.height) for r in batch_records]
        batch = prepare_images([pixels for pixels, _ in loaded], predictor.model.config.input).to(predictor.device)
        predictions = []
        for record, detections in zip(batch_records, predictor.engine.detect(batch, chunks, max_detections)):
            for box, score, label in zip(detections.boxes.tolist(), detections.scores.tolist(),
                                         detections.labels.tolist()):
                predictions.append({"image_id": record.id, "phrase_index": int(label),
                                    "bbox": xyxy_to_grounding_bbox(box), "score": float(score)})
        return predictions, [fault for _, fault in loaded if fault]

    predictions, faults, timing = _run_sharded(records, batch_size, context, progress, dataset.name, run_batch)
    _raise_size_faults(faults, dataset.source)
    timing.update(device=str(predictor.device), max_detections=max_detections)
    return InferenceOutput(predictions, timing)
