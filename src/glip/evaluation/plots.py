"""PNG plots of evaluation results, drawn with matplotlib (Agg, no display) when it is installed.

- detection: ``pr_curves.png``: interpolated precision against recall at IoU 0.50, one curve per
  category (the ``MAX_CURVES`` with most ground truth) and their mean over all categories in black;
  ``ap_per_category.png``: AP of every category, sorted (named bars up to ``MAX_NAMED_BARS``).
- grounding: ``recall.png``: Recall@k of both protocols.
- naming (`glip.evaluation.naming`): a confusion matrix of true categories against top-scoring names.
- suite: ``ap_per_dataset.png``, ``pr_curves.png`` (one mean curve per dataset), and each
  dataset's own plots in ``<out>/<dataset name>/``.

Without matplotlib the plots are skipped with a warning (``pip install matplotlib``).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

MAX_CURVES = 20
MAX_NAMED_BARS = 60


def _pyplot():
    if importlib.util.find_spec("matplotlib") is None:
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(figure)
    return path


def mean_curve(result: Any, key: str = "iou50") -> np.ndarray | None:
    """Mean interpolated precision over the categories with ground truth, ``[101]``."""
    curves = [c[key] for c in result.precision_recall["categories"].values()]
    return np.mean(np.array(curves), axis=0) if curves else None


def plot_precision_recall(result: Any, path: Path) -> Path | None:
    plt = _pyplot()
    recall = np.array(result.precision_recall["recall"])
    curves = result.precision_recall["categories"]
    if plt is None or not curves:
        return None
    rows = sorted((r for r in result.per_category if str(r["id"]) in curves), key=lambda r: -r["num_gt"])
    figure, axis = plt.subplots(figsize=(7, 5))
    for row in rows[:MAX_CURVES]:
        axis.plot(recall, curves[str(row["id"])]["iou50"], linewidth=1,
                  label=f"{row['name'][:24]} (AP50 {100 * row['AP50']:.1f})")
    axis.plot(recall, mean_curve(result), color="black", linewidth=2.5,
              label=f"mean of {len(curves)} (AP50 {100 * (result.metrics.get('AP50') or 0):.1f})")
    shown = "" if len(rows) <= MAX_CURVES else f", {MAX_CURVES} categories with most boxes shown"
    axis.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
             title=f"{result.name}: precision-recall at IoU 0.50{shown}")
    axis.legend(fontsize=6, loc="lower left", ncol=2 if len(rows) > 10 else 1)
    axis.grid(alpha=0.3)
    return _save(figure, path)


def plot_ap_per_category(result: Any, path: Path) -> Path | None:
    plt = _pyplot()
    rows = sorted((r for r in result.per_category if r["AP"] is not None), key=lambda r: -r["AP"])
    if plt is None or not rows:
        return None
    values = [100 * r["AP"] for r in rows]
    if len(rows) <= MAX_NAMED_BARS:
        figure, axis = plt.subplots(figsize=(7, 1.5 + 0.22 * len(rows)))
        positions = np.arange(len(rows))
        axis.barh(positions, values, color="tab:blue")
        axis.set_yticks(positions, [r["name"][:30] for r in rows], fontsize=7)
        axis.invert_yaxis()
        axis.set(xlabel="AP (IoU 0.50:0.95)", xlim=(0, 100))
    else:
        figure, axis = plt.subplots(figsize=(9, 4))
        axis.bar(np.arange(len(rows)), values, width=1.0, color="tab:blue")
        axis.set(xlabel=f"{len(rows)} categories, sorted by AP", ylabel="AP (IoU 0.50:0.95)", ylim=(0, 100))
    axis.set_title(f"{result.name}: AP per category (mean {100 * (result.metrics.get('AP') or 0):.1f})")
    return _save(figure, path)


def plot_grounding_recall(result: Any, path: Path) -> Path | None:
    plt = _pyplot()
    if plt is None:
        return None
    protocols = list(result.metrics)
    labels = list(result.metrics[protocols[0]])
    figure, axis = plt.subplots(figsize=(6, 4))
    width = 0.8 / len(protocols)
    for offset, protocol in enumerate(protocols):
        positions = np.arange(len(labels)) + offset * width
        axis.bar(positions, [100 * result.metrics[protocol][label] for label in labels], width,
                 label=protocol.replace("_", " "))
    axis.set_xticks(np.arange(len(labels)) + width * (len(protocols) - 1) / 2,
                    [label.replace("_", " ") for label in labels])
    axis.set(ylabel="recall (%)", ylim=(0, 100), title=f"{result.name}: phrase grounding recall")
    axis.legend()
    return _save(figure, path)


def plot_suite(result: Any, out: Path) -> dict[str, Path]:
    plt = _pyplot()
    detection = [r for r in result.results if r.task == "detection"]
    if plt is None or not detection:
        return {}
    written = {}
    figure, axis = plt.subplots(figsize=(7, 1.5 + 0.3 * len(detection)))
    positions = np.arange(len(detection))
    axis.barh(positions, [100 * (r.metrics.get("AP") or 0) for r in detection], color="tab:green")
    axis.set_yticks(positions, [r.name for r in detection], fontsize=8)
    axis.invert_yaxis()
    mean = result.metrics.get("mean_AP")
    if mean is not None:
        axis.axvline(100 * mean, color="black", linestyle="--", label=f"mean {100 * mean:.1f}")
        axis.legend(fontsize=8)
    axis.set(xlabel="AP (IoU 0.50:0.95)", xlim=(0, 100), title=f"{result.name}: AP per dataset")
    written["ap_per_dataset"] = _save(figure, out / "ap_per_dataset.png")
    figure, axis = plt.subplots(figsize=(7, 5))
    for item in detection:
        curve = mean_curve(item)
        if curve is not None:
            ap50 = 100 * (item.metrics.get("AP50") or 0)
            axis.plot(item.precision_recall["recall"], curve, label=f"{item.name} (AP50 {ap50:.1f})")
    axis.set(xlabel="recall", ylabel="precision (mean over categories)", xlim=(0, 1), ylim=(0, 1.02),
             title=f"{result.name}: precision-recall at IoU 0.50")
    axis.legend(fontsize=7)
    axis.grid(alpha=0.3)
    written["pr_curves"] = _save(figure, out / "pr_curves.png")
    return written


def write_plots(result: Any, out: Path) -> dict[str, Path]:
    """All plots of ``result`` under ``out``; empty (with a warning) without matplotlib."""
    if _pyplot() is None:
        logger.warning("matplotlib is not installed: no plots (pip install matplotlib)")
        return {}
    written: dict[str, Path] = {}
    if result.task == "suite":
        written.update(plot_suite(result, out))
        for item in result.results:
            folder = out / item.name
            folder.mkdir(parents=True, exist_ok=True)
            written.update({f"{item.name}/{k}": v for k, v in write_plots(item, folder).items()})
    elif result.task == "grounding":
        written["recall"] = plot_grounding_recall(result, out / "recall.png")
    else:
        written["pr_curves"] = plot_precision_recall(result, out / "pr_curves.png")
        written["ap_per_category"] = plot_ap_per_category(result, out / "ap_per_category.png")
    return {name: path for name, path in written.items() if path is not None}


def plot_naming_confusion(result: Any, path: Path, title: str = "naming") -> Path | None:
    """The naming confusion matrix (`glip.evaluation.naming.NamingResult`): rows = true category,
    columns = the top-scoring name (last column: no detection overlaps), cells = share of the row."""
    plt = _pyplot()
    if plt is None:
        return None
    counts = np.asarray(result.confusion, dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    rows, columns = shares.shape
    figure, axis = plt.subplots(figsize=(2.5 + 0.45 * columns, 1.8 + 0.4 * rows))
    axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(rows):
        for j in range(columns):
            if counts[i, j]:
                axis.text(j, i, f"{100 * shares[i, j]:.0f}", ha="center", va="center", fontsize=6,
                          color="white" if shares[i, j] > 0.5 else "black")
    axis.set_xticks(np.arange(columns), [*result.names, "missed"], rotation=60, ha="right", fontsize=7)
    axis.set_yticks(np.arange(rows), result.names, fontsize=7)
    axis.set(xlabel="top-scoring name", ylabel="true category",
             title=f"{title}: {100 * result.accuracy:.1f}% of {result.objects} objects named right")
    return _save(figure, path)
