"""Measure the paper's claims in miniature on the shapes world: one table row per test split.

For every model given (label -> weights), evaluates with `glip.evaluation`:
det-test AP, zeroshot-grounded AP, synonyms AP, zeroshot-novel AP (COCO box AP, prompts = the
split's category names), det-test naming accuracy (`glip.evaluation.naming`: the share of objects
whose top-scoring overlapping detection names their class, from the same detections as the AP) and
attributes Recall@1 (the top-scoring box of the phrase must match the referred object at IoU >= 0.5).
Returns the numbers and a Markdown table; with ``plots``, the naming confusion matrix as a PNG and
a JSON.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from glip.evaluation import evaluate
from glip.evaluation.detection_data import load_detection_dataset
from glip.evaluation.naming import NamingResult, naming_accuracy
from glip.evaluation.plots import plot_naming_confusion
from glip.files import write_atomically

logger = logging.getLogger(__name__)

DETECTION_SPLITS = ("det-test", "zeroshot-grounded", "synonyms", "zeroshot-novel")
GROUNDING_SPLIT = "attributes"
NAMING_SPLIT = "det-test"
NAMING = f"{NAMING_SPLIT} naming"


def write_naming(result: NamingResult, plots: Path, label: str) -> list[Path]:
    """``plots/<label>-naming.png`` (when matplotlib is there) and ``plots/<label>-naming.json``."""
    plots.mkdir(parents=True, exist_ok=True)
    data = plots / f"{label}-naming.json"
    write_atomically(data, lambda temporary: temporary.write_text(json.dumps(result.to_dict(), indent=1) + "\n"))
    picture = plot_naming_confusion(result, plots / f"{label}-naming.png", title=f"{label}, {NAMING_SPLIT}")
    return [data] + ([picture] if picture is not None else [])


def evaluate_model(weights: str | Path, data_dir: str | Path, device: str = "cpu", progress: bool = True,
                   plots: Path | None = None, label: str = "model") -> dict[str, float]:
    """{split: AP (detection splits) or Recall@1 (attributes), NAMING: accuracy} for one model;
    missing splits skipped. ``plots``: write the naming confusion matrix there (`write_naming`)."""
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
        if split == NAMING_SPLIT:
            naming = naming_accuracy(load_detection_dataset(annotations), result.predictions)
            numbers[NAMING] = naming.accuracy
            logger.info("%s: %.3f of %d objects named right; most confused: %s", NAMING, naming.accuracy,
                        naming.objects, naming.confused(top=5))
            if plots is not None:
                write_naming(naming, Path(plots), label)
    grounding = data_dir / GROUNDING_SPLIT / "grounding.jsonl"
    if grounding.is_file():
        result = evaluate(grounding, predictor, images=data_dir / GROUNDING_SPLIT, task="grounding",
                          progress=progress)
        numbers[GROUNDING_SPLIT] = float(result.metrics["any_box"]["R@1"])
    return numbers


def markdown_table(results: dict[str, dict[str, float]]) -> str:
    """Rows = splits, columns = models."""
    labels = list(results)
    rows = [("det-test", "AP"), ("det-test AP50", "AP50"), (NAMING, "naming accuracy"), ("zeroshot-grounded", "AP"),
            ("synonyms", "AP"), ("zeroshot-novel", "AP"), (GROUNDING_SPLIT, "Recall@1")]
    lines = ["| split | metric | " + " | ".join(labels) + " |", "| --- | --- |" + " ---: |" * len(labels)]
    for key, metric in rows:
        cells = [f"{results[label][key]:.3f}" if key in results[label] else "not measured" for label in labels]
        split = key.removesuffix(" AP50").removesuffix(" naming")
        lines.append(f"| {split} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
