"""Evaluation: box AP (COCO, LVIS, fixed AP), phrase-grounding recall, multi-dataset suites, reports.

Example:
    >>> from glip import GLIPPredictor
    >>> from glip.evaluation import evaluate, write_report
    >>> predictor = GLIPPredictor.from_pretrained("glip_tiny_model_o365_goldg.pth")  # doctest: +SKIP
    >>> result = evaluate("instances_val2017.json", predictor, images="val2017")  # doctest: +SKIP
    >>> result.metrics["AP"], write_report(result, "eval_out")  # doctest: +SKIP

The command line is ``glip eval`` (`glip.evaluation.cli`).
"""

from glip.evaluation.common import EvaluationError
from glip.evaluation.detection_data import (Category, CategoryPrompt, DetectionDataset, ImageInfo,
                                            detection_dataset_from_coco, load_detection_dataset)
from glip.evaluation.detection_metrics import (DetectionProtocol, DetectionResult, compute_detection_metrics,
                                               default_protocol, limit_detections)
from glip.distributed import DistributedContext, init_distributed
from glip.evaluation.grounding_data import GroundingDataset, GroundingRecord, load_grounding_dataset
from glip.evaluation.grounding_metrics import GroundingResult, compute_grounding_recall
from glip.evaluation.predictions import (check_detection_predictions, check_grounding_predictions,
                                         load_predictions, save_predictions)
from glip.evaluation.report import to_markdown, write_report
from glip.evaluation.runner import evaluate, evaluate_detection, evaluate_grounding, evaluate_suite, load_dataset
from glip.evaluation.suite import Suite, SuiteEntry, SuiteResult, load_suite

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
