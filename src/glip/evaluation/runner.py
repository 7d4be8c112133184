"""The evaluation API: a dataset plus a model *or* a predictions file in, a result with every number out.

Example:
    >>> from glip import GLIPPredictor
    >>> from glip.evaluation import evaluate, write_report
    >>> predictor = GLIPPredictor.from_pretrained("glip_tiny_model_o365_goldg.pth")  # doctest: +SKIP
    >>> result = evaluate("instances_val2017.json", predictor, images="val2017", batch_size=4)  # doctest: +SKIP
    >>> result.metrics["AP"]  # doctest: +SKIP
    >>> write_report(result, "eval_out")  # doctest: +SKIP

    >>> result = evaluate("instances_val2017.json", predictions="preds.json")  # no model  # doctest: +SKIP

Under ``torchrun`` pass ``context=init_distributed(device)``: every process runs its share of the
images and only rank 0 gets a result (the others get ``None``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

from glip.evaluation.common import EvaluationError, examples, read_json
from glip.evaluation.detection_data import DetectionDataset, detection_dataset_from_coco
from glip.evaluation.detection_metrics import (DetectionProtocol, DetectionResult, compute_detection_metrics,
                                               default_protocol)
from glip.distributed import DistributedContext
from glip.evaluation.grounding_data import GroundingDataset, load_grounding_dataset
from glip.evaluation.grounding_metrics import GroundingResult, compute_grounding_recall
from glip.evaluation.predictions import check_detection_predictions, check_grounding_predictions, load_predictions
from glip.evaluation.suite import Suite, SuiteResult, load_suite, summarize_suite

logger = logging.getLogger(__name__)

Predictions = Union[str, os.PathLike, Sequence[dict]]
Result = Union[DetectionResult, GroundingResult, SuiteResult]
# Detections kept per image when running a model, by protocol (LVIS and fixed AP look deeper).
DEFAULT_MAX_DETECTIONS = {"coco": 100, "lvis": 300, "fixed-ap": 300}


def _predictions_list(predictions: Predictions) -> tuple[list, str]:
    if isinstance(predictions, (str, os.PathLike)):
        return load_predictions(predictions), str(predictions)
    return list(predictions), "predictions"


def _present(items: list, missing: list, total_what: str, image_dir: Path | None, skip: bool) -> list:
    """The items whose image is on disk; missing ones are an error unless ``skip``."""
    if not missing:
        return items
    names = examples(getattr(m, "file_name", None) for m in missing)
    if not skip or len(missing) == len(items):
        others = len(items) - len(missing)
        advice = "" if others == 0 else (
            f", or pass skip_missing_images=True (--skip-missing-images) to evaluate the {others} others")
        raise EvaluationError(
            f"{len(missing)} of the {len(items)} {total_what} have no image file under {str(image_dir)!r} "
            f"({names}): check the image folder{advice}"
        )
    logger.warning("%d of %d %s skipped: no image file (%s)", len(missing), len(items), total_what, names)
    missing_ids = {id(m) for m in missing}
    return [item for item in items if id(item) not in missing_ids]


def evaluate_detection(
    dataset: DetectionDataset,
    predictor: Any = None,
    predictions: Predictions | None = None,
    protocol: DetectionProtocol | None = None,
    fixed_ap: bool = False,
    per_category_limit: int = 10_000,
    batch_size: int = 1,
    max_detections: int | None = None,
    skip_missing_images: bool = False,
    reuse_image_features: bool = True,
    progress: bool = False,
    context: DistributedContext | None = None,
    masks: bool = False,
) -> DetectionResult | None:
    """Box AP of a model (``predictor``) or of a COCO results file / list (``predictions``); mask AP
    too when the predictions carry masks and the ground truth has them (see
    `glip.evaluation.detection_metrics`).

    Args:
        protocol: default: COCO, or LVIS for an LVIS file; ``fixed_ap=True`` for the fixed-AP one.
        per_category_limit: detections kept per category with ``fixed_ap``.
        max_detections: per image when running the model (default 100 for COCO, 300 otherwise).
        skip_missing_images: evaluate on the images that are on disk instead of failing.
        reuse_image_features: image side once per batch rather than once per prompt chunk.
        masks: run the model's mask head too, so that mask AP is reported beside box AP (a model
            with a mask head, ground truth with masks).

    Returns:
        The result (with ``.predictions``), or ``None`` on a non-main rank.
    """
    if (predictor is None) == (predictions is None):
        raise ValueError("give either a predictor (to run the model) or predictions (a file or a list)")
    if masks:
        _check_masks_wanted(dataset, predictor)
    context = context or DistributedContext()
    protocol = protocol or default_protocol(dataset, fixed_ap, per_category_limit)
    images = dataset.images
    if predictor is not None or skip_missing_images:
        images = _present(images, dataset.missing_images(), "images", dataset.image_dir, skip_missing_images)
    timing = None
    if predictor is not None:
        from glip.evaluation.inference import predict_detections

        limit = max_detections or DEFAULT_MAX_DETECTIONS.get(protocol.name, 100)
        output = predict_detections(predictor, dataset, images, batch_size, limit, reuse_image_features, progress,
                                    context, masks)
        records, source, timing = output.predictions, "model predictions", output.timing
    else:
        records, source = _predictions_list(predictions)
    if not context.is_main:
        return None
    checked = check_detection_predictions(records, {i.id for i in dataset.images}, set(dataset.category_ids), source,
                                          image_sizes={i.id: (i.width, i.height) for i in dataset.images})
    image_ids = {i.id for i in images}
    outside = sum(1 for p in checked if p["image_id"] not in image_ids)
    if outside:
        raise EvaluationError(f"{source}: {outside} predictions are for images skipped as missing on disk")
    if not checked:
        logger.warning("%s: no predictions at all: every AP is 0", source)
    result = compute_detection_metrics(dataset, checked, protocol, image_ids)
    result.timing, result.predictions = timing, checked
    return result


def _check_masks_wanted(dataset: DetectionDataset, predictor: Any) -> None:
    """Mask AP asked of a model run: the model has a mask head and the ground truth has masks."""
    if predictor is None:
        raise EvaluationError("masks: mask AP of a predictions file comes from its own 'segmentation' fields; "
                              "masks=True (--masks) runs the model's mask head and needs a model")
    if getattr(predictor.model, "mask_head", None) is None:
        from glip.engine import NO_MASK_HEAD

        raise EvaluationError(NO_MASK_HEAD.replace("leave masks off", "evaluate boxes alone (without --masks)"))
    if not any(annotation.get("segmentation") is not None for annotation in dataset.annotations):
        raise EvaluationError(f"{dataset.source}: no ground-truth box has a 'segmentation', so there is no mask AP "
                              "to compute: evaluate boxes alone (without --masks)")


def evaluate_grounding(
    dataset: GroundingDataset,
    predictor: Any = None,
    predictions: Predictions | None = None,
    ks: Sequence[int] = (1, 5, 10),
    iou_threshold: float = 0.5,
    batch_size: int = 1,
    max_detections: int = 100,
    skip_missing_images: bool = False,
    progress: bool = False,
    context: DistributedContext | None = None,
) -> GroundingResult | None:
    """Phrase-grounding Recall@k ("any box" and "merged boxes") of a model or of predictions."""
    if (predictor is None) == (predictions is None):
        raise ValueError("give either a predictor (to run the model) or predictions (a file or a list)")
    context = context or DistributedContext()
    records = dataset.records
    if predictor is not None or skip_missing_images:
        records = _present(records, dataset.missing_images(), "records", dataset.image_dir, skip_missing_images)
    evaluated = dataset if len(records) == len(dataset.records) else GroundingDataset(
        dataset.name, records, dataset.image_dir, dataset.source)
    timing = None
    if predictor is not None:
        from glip.evaluation.inference import predict_grounding

        output = predict_grounding(predictor, evaluated, None, batch_size, max_detections, progress, context)
        raw, source, timing = output.predictions, "model predictions", output.timing
    else:
        raw, source = _predictions_list(predictions)
    if not context.is_main:
        return None
    checked = check_grounding_predictions(raw, {r.id: r.num_phrases for r in dataset.records}, source)
    result = compute_grounding_recall(evaluated, checked, ks, iou_threshold)
    if evaluated is not dataset:
        result.notes.append(f"evaluated on {len(records)} of the {len(dataset.records)} records (images missing)")
    result.timing, result.predictions = timing, checked
    return result


def load_dataset(path: str | os.PathLike, images: str | os.PathLike | None = None, task: str | None = None,
                 name: str | None = None, prompts: Mapping | None = None) -> DetectionDataset | GroundingDataset:
    """A detection or grounding dataset from its annotation file; ``task`` None = from the file.

    ``.jsonl`` is grounding; a JSON whose images carry a ``caption`` is MDETR grounding; any
    other JSON is COCO detection.
    """
    path = Path(path)
    if task not in (None, "detection", "grounding"):
        raise ValueError(f"task must be 'detection' or 'grounding', got {task!r}")
    if path.suffix == ".jsonl":
        if task == "detection":
            raise EvaluationError(f"{path}: JSON Lines files hold grounding data; detection needs COCO JSON")
        if prompts:
            raise EvaluationError(f"{path}: prompt overrides apply to detection categories, not to grounding")
        return load_grounding_dataset(path, images, name)
    data = read_json(path, "annotation file")
    images_list = data.get("images") if isinstance(data, dict) else None
    has_captions = bool(images_list) and isinstance(images_list[0], dict) and "caption" in images_list[0]
    if task == "grounding" or (task is None and has_captions):
        if prompts:
            raise EvaluationError(f"{path}: prompt overrides apply to detection categories, not to grounding")
        return load_grounding_dataset(path, images, name, data=data)
    return detection_dataset_from_coco(data, name=name or path.stem,
                                       image_dir=Path(images) if images is not None else path.parent,
                                       source=str(path), prompts=prompts)


def evaluate_suite(suite: Suite | str | os.PathLike, predictor: Any = None,
                   predictions_dir: str | os.PathLike | None = None, **options: Any) -> SuiteResult | None:
    """Evaluate every dataset of a suite; a dataset uses, in this order, its own ``predictions``,
    ``predictions_dir/<name>.json``, or the model. ``options`` go to `evaluate_detection` /
    `evaluate_grounding` (``fixed_ap`` may be set per dataset in the YAML)."""
    suite = suite if isinstance(suite, Suite) else load_suite(suite)
    context = options.get("context") or DistributedContext()
    results = []
    for entry in suite.entries:
        dataset = load_dataset(entry.annotations, entry.images, entry.task, entry.name, entry.prompts)
        source: Any = entry.predictions
        if source is None and predictions_dir is not None:
            source = Path(predictions_dir) / f"{entry.name}.json"
        if source is None and predictor is None:
            raise EvaluationError(f"{suite.source}: dataset {entry.name!r} has no predictions file and no model "
                                  "was given (--weights)")
        run_model = predictor if source is None else None
        if isinstance(dataset, GroundingDataset):
            allowed = {k: v for k, v in options.items() if k in _GROUNDING_OPTIONS}
            result = evaluate_grounding(dataset, run_model, source, **allowed)
        else:
            # masks: the model's mask head on the datasets it runs on; a predictions file's masks are its own
            allowed = {k: v for k, v in options.items() if k in _DETECTION_OPTIONS and (k != "masks" or run_model)}
            if entry.fixed_ap is not None:
                allowed["fixed_ap"] = entry.fixed_ap
            result = evaluate_detection(dataset, run_model, source, **allowed)
        if context.is_main:
            results.append(result)
    return summarize_suite(suite.name, results) if context.is_main else None


_DETECTION_OPTIONS = {"fixed_ap", "per_category_limit", "batch_size", "max_detections", "skip_missing_images",
                      "reuse_image_features", "progress", "context", "masks"}
_GROUNDING_OPTIONS = {"ks", "iou_threshold", "batch_size", "max_detections", "skip_missing_images", "progress",
                      "context"}


def evaluate(dataset: str | os.PathLike | DetectionDataset | GroundingDataset | Suite, predictor: Any = None,
             predictions: Predictions | None = None, images: str | os.PathLike | None = None,
             task: str | None = None, name: str | None = None, prompts: Mapping | None = None,
             **options: Any) -> Result | None:
    """Evaluate a model or predictions on an annotation file, a loaded dataset, or a suite YAML.

    ``prompts``: per-category prompt overrides of a detection file (see `load_detection_dataset`).

    ``options`` go to `evaluate_detection`, `evaluate_grounding` or `evaluate_suite` (each takes
    the ones it knows; for a suite, ``predictions`` is a folder of ``<dataset name>.json`` files).
    """
    if isinstance(dataset, Suite) or (isinstance(dataset, (str, os.PathLike))
                                      and Path(dataset).suffix in (".yaml", ".yml")):
        if images is not None or task is not None or name is not None or prompts:
            raise EvaluationError("a suite names each dataset's images, task, name and prompts in its YAML")
        return evaluate_suite(dataset, predictor, predictions, **options)
    if isinstance(dataset, (str, os.PathLike)):
        dataset = load_dataset(dataset, images, task, name, prompts)
    elif prompts:
        raise EvaluationError("prompt overrides are read with the annotation file: pass its path, not a loaded dataset")
    if isinstance(dataset, GroundingDataset):
        if options.get("fixed_ap"):
            raise EvaluationError(f"{dataset.source}: fixed AP is a detection protocol; this is grounding data")
        if options.get("masks"):
            raise EvaluationError(f"{dataset.source}: mask AP is for detection data (COCO or LVIS JSON with "
                                  "'segmentation'); this is grounding data: leave out --masks")
        allowed = {k: v for k, v in options.items() if k in _GROUNDING_OPTIONS}
        return evaluate_grounding(dataset, predictor, predictions, **allowed)
    allowed = {k: v for k, v in options.items() if k in _DETECTION_OPTIONS}
    return evaluate_detection(dataset, predictor, predictions, **allowed)
