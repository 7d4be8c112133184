"""Reports of an evaluation: ``metrics.json`` (every number), ``report.md`` (tables) and PNG plots.

Numbers in the JSON are fractions in [0, 1] as pycocotools gives them (``null`` = undefined, e.g.
the AP of a category without ground truth); the Markdown shows percentages with one decimal, as
papers do.

Example:
    >>> paths = write_report(result, "eval_out")  # doctest: +SKIP
    >>> sorted(paths)  # doctest: +SKIP
    ['ap_per_category', 'json', 'markdown', 'pr_curves']
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from glip.evaluation.common import dumps_readable
from glip.evaluation.detection_data import FREQUENCY_NAMES
from glip.evaluation.predictions import save_predictions

logger = logging.getLogger(__name__)

DETECTION_COLUMNS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
FREQUENCY_COLUMNS = ("APr", "APc", "APf")


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100.0 * value:.1f}"


def _table(header: list[str], rows: list[list[str]], align_right_from: int = 1) -> list[str]:
    aligns = [":---" if i < align_right_from else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(aligns) + " |"]
    lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


def _timing_line(timing: dict | None) -> list[str]:
    if not timing:
        return []
    parts = [f"{timing['seconds']:.1f} s"]
    if timing.get("images_per_second"):
        parts.append(f"{timing['images_per_second']:.2f} images/s")
    if timing.get("processes"):
        parts.append(f"{timing['processes']} process{'es' if timing['processes'] > 1 else ''}")
    if timing.get("batch_size"):
        parts.append(f"batch {timing['batch_size']}")
    if timing.get("prompt_chunks"):
        parts.append(f"{timing['prompt_chunks']} prompt chunk{'s' if timing['prompt_chunks'] > 1 else ''}")
    if timing.get("device"):
        parts.append(timing["device"])
    return [f"Model run: {', '.join(parts)}", ""]


def detection_markdown(result: Any, level: int = 1) -> list[str]:
    head = "#" * level
    protocol = result.protocol["name"]
    lines = [f"{head} Detection: {result.name} ({protocol} protocol)", ""]
    with_gt = sum(1 for row in result.per_category if row["AP"] is not None)
    lines += [f"Images: {result.num_images} · predictions: {result.num_predictions} · categories: "
              f"{len(result.per_category)} ({with_gt} with ground truth)", ""]
    lines += _timing_line(result.timing)
    metrics = result.metrics
    lines += _table(list(DETECTION_COLUMNS), [[percent(metrics.get(k)) for k in DETECTION_COLUMNS]], 0) + [""]
    if "APr" in metrics:
        header = [f"{k} ({FREQUENCY_NAMES[k[-1]]})" for k in FREQUENCY_COLUMNS]
        lines += _table(header, [[percent(metrics.get(k)) for k in FREQUENCY_COLUMNS]], 0) + [""]
    recall_keys = [k for k in metrics if k.startswith("AR")]
    lines += _table(recall_keys, [[percent(metrics[k]) for k in recall_keys]], 0) + [""]
    masks = result.mask_metrics
    if masks is not None:
        keys = list(DETECTION_COLUMNS) + [k for k in FREQUENCY_COLUMNS if k in masks]
        lines += ["Mask AP (mask IoU):", ""]
        lines += _table([f"mask {k}" for k in keys], [[percent(masks.get(k)) for k in keys]], 0) + [""]
    lines += [f"{head}# Per category", ""]
    show_prompt = any(row["prompt"] != row["name"] for row in result.per_category)
    show_frequency = any(row["frequency"] for row in result.per_category)
    header = ["id", "category"] + (["prompt"] if show_prompt else []) + (["freq."] if show_frequency else []) + [
        "GT boxes", "predictions", "AP", "AP50", "AP75"] + (["mask AP"] if masks is not None else [])
    rows = []
    for row in result.per_category:
        rows.append([row["id"], row["name"]] + ([row["prompt"]] if show_prompt else [])
                    + ([row["frequency"] or ""] if show_frequency else [])
                    + [row["num_gt"], row["num_predictions"], percent(row["AP"]), percent(row["AP50"]),
                       percent(row["AP75"])] + ([percent(row["mask_AP"])] if masks is not None else []))
    lines += _table(header, rows, 2 + show_prompt + show_frequency) + [""]
    return lines + _notes(result.notes)


def grounding_markdown(result: Any, level: int = 1) -> list[str]:
    head = "#" * level
    lines = [f"{head} Phrase grounding: {result.name}", ""]
    lines += [f"Records (image and caption): {result.num_records} · phrases with a box: {result.num_phrases} · "
              f"predictions: {result.num_predictions} · IoU >= {result.iou_threshold:g}", ""]
    lines += _timing_line(result.timing)
    labels = list(next(iter(result.metrics.values())))
    header = ["protocol"] + [label.replace("_", " ") for label in labels]
    rows = [[protocol.replace("_", " ")] + [percent(values[label]) for label in labels]
            for protocol, values in result.metrics.items()]
    return lines + _table(header, rows) + [""] + _notes(result.notes)


def suite_markdown(result: Any) -> list[str]:
    lines = [f"# Suite: {result.name}", ""]
    masks = any(getattr(item, "mask_metrics", None) is not None for item in result.results)
    rows = []
    for item in result.results:
        if item.task == "detection":
            mask_ap = [percent(item.mask_metrics.get("AP")) if item.mask_metrics is not None else ""] if masks else []
            rows.append([item.name, "detection", percent(item.metrics.get("AP")), percent(item.metrics.get("AP50"))]
                        + mask_ap + ["", item.num_images])
        else:
            rows.append([item.name, "grounding", "", ""] + [""] * masks
                        + [percent(item.metrics["any_box"].get("R@1")), item.num_records])
    rows.append(["**mean**", "", f"**{percent(result.metrics['mean_AP'])}**", ""] + [""] * masks + ["", ""])
    header = ["dataset", "task", "AP", "AP50"] + ["mask AP"] * masks + ["R@1 (any box)", "images"]
    lines += _table(header, rows, 2) + [""]
    lines += _notes(result.notes)
    for item in result.results:
        lines += (detection_markdown(item, 2) if item.task == "detection" else grounding_markdown(item, 2))
    return lines


def _notes(notes: list[str]) -> list[str]:
    return ([f"- {note}" for note in notes] + [""]) if notes else []


def to_markdown(result: Any) -> str:
    """The Markdown report of a detection, grounding or suite result."""
    if result.task == "suite":
        lines = suite_markdown(result)
    elif result.task == "grounding":
        lines = grounding_markdown(result)
    else:
        lines = detection_markdown(result)
    return "\n".join(lines).rstrip() + "\n"


def write_report(result: Any, out_dir: str | os.PathLike, plots: bool = True,
                 save_predictions_file: bool = False) -> dict[str, Path]:
    """Write ``metrics.json``, ``report.md`` and the plots (and the predictions) under ``out_dir``.

    Returns:
        what was written, by name (plots are left out, with a warning, without matplotlib).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {"json": out / "metrics.json", "markdown": out / "report.md"}
    written["json"].write_text(dumps_readable(result.to_dict()) + "\n", encoding="utf-8")
    written["markdown"].write_text(to_markdown(result), encoding="utf-8")
    if save_predictions_file:
        parts = result.results if result.task == "suite" else [result]
        for part in parts:
            if part.predictions is not None:
                name = f"predictions/{part.name}" if result.task == "suite" else "predictions"
                written[name] = save_predictions(part.predictions, out / f"{name}.json")
    if plots:
        from glip.evaluation.plots import write_plots

        written.update(write_plots(result, out))
    return written
