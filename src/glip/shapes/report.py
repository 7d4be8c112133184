"""Measure the paper's claims in miniature on the shapes world: one table row per test split.

For every model given (label -> weights), evaluates with `glip.evaluation`:
det-test AP, zeroshot-grounded AP, synonyms AP, zeroshot-novel AP (COCO box AP, prompts = the
split's category names), det-test naming accuracy (`glip.evaluation.naming`: the share of objects
whose top-scoring overlapping detection names their class, from the same detections as the AP) and
attributes Recall@1 (the top-scoring box of the phrase must match the referred object at IoU >= 0.5).
A model with a mask head (GLIPv2) runs it on det-test too, in the same forward pass (the same
detections): det-test mask AP (COCO ``segm``) against the objects' visible-pixel masks; a model
without one shows "-" in that row.
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
MASK_SPLIT = "det-test"
MASK_AP = f"{MASK_SPLIT} mask AP"  # None in a model's numbers: the model has no mask head


def write_naming(result: NamingResult, plots: Path, label: str) -> list[Path]:
    """``plots/<label>-naming.png`` (when matplotlib is there) and ``plots/<label>-naming.json``."""
    plots.mkdir(parents=True, exist_ok=True)
    data = plots / f"{label}-naming.json"
    write_atomically(data, lambda temporary: temporary.write_text(json.dumps(result.to_dict(), indent=1) + "\n"))
    picture = plot_naming_confusion(result, plots / f"{label}-naming.png", title=f"{label}, {NAMING_SPLIT}")
    return [data] + ([picture] if picture is not None else [])


def evaluate_model(weights: str | Path, data_dir: str | Path, device: str = "cpu", progress: bool = True,
                   plots: Path | None = None, label: str = "model") -> dict[str, float | None]:
    """{split: AP (detection splits) or Recall@1 (attributes), NAMING: accuracy, MASK_AP: mask AP or
    None without a mask head} for one model; missing splits skipped. ``plots``: write the naming
    confusion matrix there (`write_naming`)."""
    from glip.predictor import GLIPPredictor

    predictor = GLIPPredictor.from_pretrained(weights, device=device)
    data_dir = Path(data_dir)
    numbers: dict[str, float | None] = {}
    if predictor.model.mask_head is None:
        numbers[MASK_AP] = None
    for split in DETECTION_SPLITS:
        annotations = data_dir / split / "annotations.json"
        if not annotations.is_file():
            logger.warning("no %s split in %s: skipped", split, data_dir)
            continue
        start = time.perf_counter()
        masks = split == MASK_SPLIT and predictor.model.mask_head is not None and _has_masks(annotations)
        result = evaluate(annotations, predictor, images=data_dir / split, task="detection", progress=progress,
                          masks=masks)
        if masks and result.mask_metrics is not None:
            numbers[MASK_AP] = float(result.mask_metrics["AP"])
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


def _has_masks(annotations: Path) -> bool:
    """Whether a split's objects have masks (splits written before masks were added have none)."""
    data = json.loads(annotations.read_text())
    if any(a.get("segmentation") for a in data.get("annotations", [])):
        return True
    logger.warning("%s has no object masks: no mask AP (generate the split again)", annotations)
    return False


def _cell(numbers: dict[str, float | None], key: str) -> str:
    if key not in numbers:
        return "not measured"
    return "-" if numbers[key] is None else f"{numbers[key]:.3f}"


def markdown_table(results: dict[str, dict[str, float | None]]) -> str:
    """Rows = splits, columns = models; "-": a mask row of a model without a mask head."""
    labels = list(results)
    rows = [("det-test", "AP"), ("det-test AP50", "AP50"), (NAMING, "naming accuracy"), (MASK_AP, "mask AP"),
            ("zeroshot-grounded", "AP"), ("synonyms", "AP"), ("zeroshot-novel", "AP"), (GROUNDING_SPLIT, "Recall@1")]
    lines = ["| split | metric | " + " | ".join(labels) + " |", "| --- | --- |" + " ---: |" * len(labels)]
    for key, metric in rows:
        cells = [_cell(results[label], key) for label in labels]
        split = key.removesuffix(" AP50").removesuffix(" naming").removesuffix(" mask AP")
        lines.append(f"| {split} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
