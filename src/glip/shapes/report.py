"""Measure the paper's claims in miniature on the shapes world: one table row per test split.

For every model given (label -> weights), evaluates with `glip.evaluation`:
det-test AP, zeroshot-grounded AP, synonyms AP, zeroshot-novel AP (COCO box AP, prompts = the
split's category names) and attributes Recall@1 (the top-scoring box of the phrase must match
the referred object at IoU >= 0.5). Returns the numbers and a Markdown table.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from glip.evaluation import evaluate

logger = logging.getLogger(__name__)

DETECTION_SPLITS = ("det-test", "zeroshot-grounded", "synonyms", "zeroshot-novel")
GROUNDING_SPLIT = "attributes"


def evaluate_model(weights: str | Path, data_dir: str | Path, device: str = "cpu",
                   progress: bool = True) -> dict[str, float]:
    """{split: AP (detection splits) or Recall@1 (attributes)} for one model; missing splits skipped."""
    from glip.predictor import GLIPPredictor

    predictor = GLIPPredictor.from_pretrained(weights, device=device)
    data_dir = Path(data_dir)
    numbers: dict[str, float] = {}
    for split in DETECTION_SPLITS:
        annotations = data_dir / split / "annotations.json"
        if not annotations.is_file():
            logger.warning("no %s split in %s: skipped", split, data_dir)
            continue
        start = time.perf_counter()
        result = evaluate(annotations, predictor, images=data_dir / split, task="detection", progress=progress)
        numbers[split] = float(result.metrics["AP"])
        numbers[f"{split} AP50"] = float(result.metrics["AP50"])
        logger.info("%s: AP %.3f (%.0f s)", split, numbers[split], time.perf_counter() - start)
    grounding = data_dir / GROUNDING_SPLIT / "grounding.jsonl"
    if grounding.is_file():
        result = evaluate(grounding, predictor, images=data_dir / GROUNDING_SPLIT, task="grounding",
                          progress=progress)
        numbers[GROUNDING_SPLIT] = float(result.metrics["any_box"]["R@1"])
    return numbers


def markdown_table(results: dict[str, dict[str, float]]) -> str:
    """Rows = splits, columns = models."""
    labels = list(results)
    rows = [("det-test", "AP"), ("det-test AP50", "AP50"), ("zeroshot-grounded", "AP"),
            ("synonyms", "AP"), ("zeroshot-novel", "AP"), (GROUNDING_SPLIT, "Recall@1")]
    lines = ["| split | metric | " + " | ".join(labels) + " |", "| --- | --- |" + " ---: |" * len(labels)]
    for key, metric in rows:
        cells = [f"{results[label][key]:.3f}" if key in results[label] else "not measured" for label in labels]
        lines.append(f"| {key.removesuffix(' AP50')} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
