"""Evaluation: box AP (COCO, LVIS, fixed AP), phrase-grounding recall, multi-dataset suites, reports.

Example:
    >>> from glip import GLIPPredictor
    >>> from glip.evaluation import evaluate, write_report
    >>> predictor = GLIPPredictor.from_pretrained("glip_tiny_model_o365_goldg.pth")  # doctest: +SKIP
    >>> result = evaluate("instances_val2017.json", predictor, images="val2017")  # doctest: +SKIP
    >>> result.metrics["AP"], write_report(result, "eval_out")  # doctest: +SKIP

The command line is ``glip eval`` (`glip.evaluation.cli`). The names below are imported on first use,
so that ``glip eval --help`` and argument errors do not load the model stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from glip.lazy_exports import lazy_exports

# Public name -> module that defines it.
_LAZY = {
    "Category": "glip.evaluation.detection_data",
    "CategoryPrompt": "glip.evaluation.detection_data",
    "DetectionDataset": "glip.evaluation.detection_data",
    "DetectionProtocol": "glip.evaluation.detection_metrics",
    "DetectionResult": "glip.evaluation.detection_metrics",
    "DistributedContext": "glip.distributed",
    "EvaluationError": "glip.evaluation.common",
    "GroundingDataset": "glip.evaluation.grounding_data",
    "GroundingRecord": "glip.evaluation.grounding_data",
    "GroundingResult": "glip.evaluation.grounding_metrics",
    "ImageInfo": "glip.evaluation.detection_data",
    "Suite": "glip.evaluation.suite",
    "SuiteEntry": "glip.evaluation.suite",
    "SuiteResult": "glip.evaluation.suite",
    "check_detection_predictions": "glip.evaluation.predictions",
    "check_grounding_predictions": "glip.evaluation.predictions",
    "compute_detection_metrics": "glip.evaluation.detection_metrics",
    "compute_grounding_recall": "glip.evaluation.grounding_metrics",
    "default_protocol": "glip.evaluation.detection_metrics",
    "detection_dataset_from_coco": "glip.evaluation.detection_data",
    "evaluate": "glip.evaluation.runner",
    "evaluate_detection": "glip.evaluation.runner",
    "evaluate_grounding": "glip.evaluation.runner",
    "evaluate_suite": "glip.evaluation.runner",
    "init_distributed": "glip.distributed",
    "limit_detections": "glip.evaluation.detection_metrics",
    "load_dataset": "glip.evaluation.runner",
    "load_detection_dataset": "glip.evaluation.detection_data",
    "load_grounding_dataset": "glip.evaluation.grounding_data",
    "load_predictions": "glip.evaluation.predictions",
    "load_suite": "glip.evaluation.suite",
    "save_predictions": "glip.evaluation.predictions",
    "to_markdown": "glip.evaluation.report",
    "write_report": "glip.evaluation.report",
}

__all__ = [
    "Category",
    "CategoryPrompt",
    "DetectionDataset",
    "DetectionProtocol",
    "DetectionResult",
    "DistributedContext",
    "EvaluationError",
    "GroundingDataset",
    "GroundingRecord",
    "GroundingResult",
    "ImageInfo",
    "Suite",
    "SuiteEntry",
    "SuiteResult",
    "check_detection_predictions",
    "check_grounding_predictions",
    "compute_detection_metrics",
    "compute_grounding_recall",
    "default_protocol",
    "detection_dataset_from_coco",
    "evaluate",
    "evaluate_detection",
    "evaluate_grounding",
    "evaluate_suite",
    "init_distributed",
    "limit_detections",
    "load_dataset",
    "load_detection_dataset",
    "load_grounding_dataset",
    "load_predictions",
    "load_suite",
    "save_predictions",
    "to_markdown",
    "write_report",
]

if TYPE_CHECKING:
    from glip.evaluation.common import EvaluationError
    from glip.evaluation.detection_data import (Category, CategoryPrompt, DetectionDataset, ImageInfo,
                                                detection_dataset_from_coco, load_detection_dataset)
    from glip.evaluation.detection_metrics import (DetectionProtocol, DetectionResult,
                                                   compute_detection_metrics, default_protocol,
                                                   limit_detections)
    from glip.distributed import DistributedContext, init_distributed
    from glip.evaluation.grounding_data import GroundingDataset, GroundingRecord, load_grounding_dataset
    from glip.evaluation.grounding_metrics import GroundingResult, compute_grounding_recall
    from glip.evaluation.predictions import (check_detection_predictions, check_grounding_predictions,
                                             load_predictions, save_predictions)
    from glip.evaluation.report import to_markdown, write_report
    from glip.evaluation.runner import (evaluate, evaluate_detection, evaluate_grounding, evaluate_suite,
                                        load_dataset)
    from glip.evaluation.suite import Suite, SuiteEntry, SuiteResult, load_suite

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
