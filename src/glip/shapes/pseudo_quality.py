"""How good are pseudo labels? Precision and recall of a teacher's boxes against the ``web`` truth.

``glip label`` writes, per labelled pair, an ODVG record with the pair's ``key`` and, per box, the
caption span of the phrase it grounds (``tokens_positive``) and its ``score``. The ``web`` split's
``truth.jsonl`` holds the same captions with the true box of every object under the span of the
phrase that mentions it. Scoring:

1. A label record is matched to the truth record with the same ``key`` (else the same file stem,
   ``images/000007.jpg`` or ``SHARD#000007`` giving ``000007``) whose caption is the same.
2. A pseudo region grounds the truth phrase whose shape word (its last word, e.g. ``ellipse``)
   lies inside the region's span; a region grounding no truth phrase ("the left" of "to the left
   of", "a picture") is of kind ``other``. Spans are character ``[start, end)`` offsets.
3. Per truth phrase, its pseudo boxes, best score first, are matched one-to-one to its true boxes
   at IoU >= ``iou_threshold`` (greedy, as in COCO evaluation).

Precision of a kind = matched pseudo boxes / pseudo boxes of phrases of that kind (``other``:
always 0, none can match); recall = matched true boxes / true boxes of that kind, over every truth
record (a pair the labeller dropped counts its boxes as missed) or, with ``labelled_only``, over
the truth records that were labelled.

Example:
    >>> quality = score_pseudo_labels(read_label_records(["runs/web-labels"]),
    ...                               read_truth("data/shapes/web/truth/truth.jsonl"))  # doctest: +SKIP
    >>> quality.kinds["novel"].precision  # doctest: +SKIP
    0.41
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

import torch
from torchvision.ops import box_iou

KINDS: tuple[str, ...] = ("trained", "novel", "other")
NOT_LABEL_FILES = ("errors.jsonl",)  # files in a labelling folder that hold no label records


@dataclass
class Count:
    """Boxes of one kind (or one shape): pseudo boxes, true boxes and matches at the IoU threshold."""

    pseudo_boxes: int = 0
    truth_boxes: int = 0
    true_positives: int = 0  # pseudo boxes matched to a true box (each true box at most once)

    @property
    def precision(self) -> float | None:
        return self.true_positives / self.pseudo_boxes if self.pseudo_boxes else None

    @property
    def recall(self) -> float | None:
        return self.true_positives / self.truth_boxes if self.truth_boxes else None

    def to_dict(self) -> dict:
        return asdict(self) | {"precision": self.precision, "recall": self.recall}


@dataclass
class PseudoQuality:
    """The result of `score_pseudo_labels`.

    Attributes:
        kinds: counts per phrase kind (``trained``, ``novel``, ``other``).
        shapes: counts per shape named by the truth phrase.
        total: all kinds together.
        iou_threshold, min_score: the thresholds used.
        truth_records: truth pairs counted for recall; labelled_records: those with a label record.
        unmatched_records: label records with no truth record of that key and caption.
        exact_spans: pseudo phrases (distinct spans) whose span is exactly a truth phrase's span;
        partial_spans: those grounding a truth phrase with a different span.
    """

    kinds: dict[str, Count]
    shapes: dict[str, Count]
    total: Count
    iou_threshold: float
    min_score: float
    truth_records: int = 0
    labelled_records: int = 0
    unmatched_records: list[str] = field(default_factory=list)
    exact_spans: int = 0
    partial_spans: int = 0

    def to_dict(self) -> dict:
        return {"iou_threshold": self.iou_threshold, "min_score": self.min_score,
                "truth_records": self.truth_records, "labelled_records": self.labelled_records,
                "unmatched_records": len(self.unmatched_records),
                "unmatched_keys": self.unmatched_records[:20], "exact_spans": self.exact_spans,
                "partial_spans": self.partial_spans, "total": self.total.to_dict(),
                "kinds": {kind: count.to_dict() for kind, count in self.kinds.items()},
                "shapes": {shape: count.to_dict() for shape, count in sorted(self.shapes.items())}}


def _read_jsonl(path: Path) -> list[dict]:
    records = []
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not JSON ({error.msg}); is this a JSON Lines file?") from None
    return records


def read_truth(path: str | os.PathLike) -> dict[str, dict]:
    """The records of a ``web`` ``truth.jsonl``, by key."""
    truth = {}
    for record in _read_jsonl(Path(path)):
        regions = record.get("grounding", {}).get("regions", [])
        if "key" not in record or "grounding" not in record or any("kind" not in r for r in regions):
            raise ValueError(f"{path}: a record without 'key', 'grounding' or region 'kind'; "
                             "pass the truth.jsonl of a web split")
        truth[record["key"]] = record
    return truth


def label_files(inputs: list[str | os.PathLike]) -> list[Path]:
    """The label shards named by ``inputs``: ``.jsonl`` files, or folders of them (``errors.jsonl`` left out)."""
    files = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(p for p in item.glob("*.jsonl") if p.name not in NOT_LABEL_FILES)
        elif item.is_file():
            files.append(item)
        else:
            raise FileNotFoundError(f"labels {item} not found; "
                                    "pass the --out folder of glip label or its .jsonl shards")
    if not files:
        raise ValueError(f"no label shards (.jsonl) in {', '.join(map(str, inputs))}")
    return files


def read_label_records(inputs: list[str | os.PathLike]) -> list[dict]:
    """Every ODVG label record of the shards named by ``inputs`` (see `label_files`)."""
    records = []
    for path in label_files(inputs):
        for record in _read_jsonl(path):
            if "grounding" not in record:
                raise ValueError(f"{path}: a record without 'grounding'; is this a label shard of glip label?")
            records.append(record)
    return records


def _stem(filename: str) -> str:
    """``images/000007.jpg`` or ``shards/web-000000.tar#000007`` -> ``000007``."""
    return PurePosixPath(filename.rsplit("#", 1)[-1].replace("\\", "/")).stem


def match_truth(record: dict, truth: dict[str, dict]) -> dict | None:
    """The truth record of a label record: same key (else same file stem), same caption."""
    caption = record["grounding"].get("caption")
    for key in (str(record.get("key", "")), _stem(str(record.get("filename", "")))):
        if key in truth and truth[key]["grounding"]["caption"] == caption:
            return truth[key]
    return None


def _truth_phrases(truth: dict) -> list[dict]:
    """The phrases of a truth record: span, shape-word span, kind, shape and true boxes."""
    phrases: dict[tuple[int, int], dict] = {}
    for region in truth["grounding"]["regions"]:
        start, end = region["tokens_positive"][0]
        phrase = phrases.setdefault((start, end), {
            "span": (start, end), "noun": (end - len(region["phrase"].split()[-1]), end),
            "kind": region["kind"], "shape": region["shape"], "boxes": []})
        phrase["boxes"].append(region["bbox"])
    return list(phrases.values())


def _grounded(spans: list[list[int]], phrases: list[dict]) -> int | None:
    """Index of the truth phrase whose shape word lies inside one of ``spans``, or None."""
    for index, phrase in enumerate(phrases):
        if any(start <= phrase["noun"][0] and phrase["noun"][1] <= end for start, end in spans):
            return index
    return None


def _matches(pseudo: list[tuple[float, list[float]]], boxes: list[list[float]], iou_threshold: float) -> int:
    """Greedy one-to-one matches of scored pseudo boxes (best first) to true boxes at the IoU threshold."""
    if not pseudo or not boxes:
        return 0
    ordered = sorted(pseudo, key=lambda item: -item[0])
    iou = box_iou(torch.tensor([box for _, box in ordered], dtype=torch.float64),
                  torch.tensor(boxes, dtype=torch.float64))  # [pseudo, truth]
    taken = torch.zeros(len(boxes), dtype=torch.bool)
    for row in iou:
        row = row.masked_fill(taken, -1.0)
        best = int(row.argmax())
        if row[best] >= iou_threshold:
            taken[best] = True
    return int(taken.sum())


def score_pseudo_labels(records: list[dict], truth: dict[str, dict], iou_threshold: float = 0.5,
                        min_score: float = 0.0, labelled_only: bool = False) -> PseudoQuality:
    """Precision and recall of the pseudo boxes of ``records`` against ``truth`` (see the module docstring).

    Args:
        records: ODVG label records with ``key`` and regions with ``tokens_positive`` and ``score``.
        truth: `read_truth` of the web split the records label.
        iou_threshold: least IoU for a pseudo box to match a true box.
        min_score: regions scored below this are ignored (the labeller already kept only boxes
            above its ``--min-score``; this scores a stricter threshold).
        labelled_only: count recall over the labelled pairs only.
    """
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    quality = PseudoQuality({kind: Count() for kind in KINDS}, {}, Count(), iou_threshold, min_score)
    labelled: dict[str, dict] = {}
    for record in records:
        match = match_truth(record, truth)
        if match is None:
            quality.unmatched_records.append(str(record.get("key", record.get("filename"))))
        elif match["key"] in labelled:
            raise ValueError(f"pair {match['key']} is labelled twice (shards {labelled[match['key']].get('shard')} "
                             f"and {record.get('shard')}); score the labels of one input (pairs.jsonl or the shards)")
        else:
            labelled[match["key"]] = record
    if records and not labelled:
        raise ValueError(f"none of the {len(records)} label records matches a truth record by key and caption; "
                         "were they labelled from this web split?")
    for key, truth_record in truth.items():
        if labelled_only and key not in labelled:
            continue
        quality.truth_records += 1
        _score_pair(quality, truth_record, labelled.get(key))
    quality.labelled_records = len(labelled)
    return quality


def _score_pair(quality: PseudoQuality, truth: dict, record: dict | None) -> None:
    phrases = _truth_phrases(truth)
    pseudo: list[list[tuple[float, list[float]]]] = [[] for _ in phrases]
    spans_seen: set[tuple] = set()
    for region in (record or {"grounding": {"regions": []}})["grounding"]["regions"]:
        score = float(region.get("score", 1.0))
        if score < quality.min_score:
            continue
        spans = [list(span) for span in region["tokens_positive"]]
        index = _grounded(spans, phrases)
        kind = "other" if index is None else phrases[index]["kind"]
        quality.kinds[kind].pseudo_boxes += 1
        quality.total.pseudo_boxes += 1
        if index is None:
            continue
        quality.shapes.setdefault(phrases[index]["shape"], Count()).pseudo_boxes += 1
        pseudo[index].append((score, region["bbox"]))
        if tuple(map(tuple, spans)) not in spans_seen:
            spans_seen.add(tuple(map(tuple, spans)))
            exact = spans == [list(phrases[index]["span"])]
            quality.exact_spans += exact
            quality.partial_spans += not exact
    for phrase, boxes in zip(phrases, pseudo):
        matched = _matches(boxes, phrase["boxes"], quality.iou_threshold)
        for count in (quality.kinds[phrase["kind"]], quality.shapes.setdefault(phrase["shape"], Count()),
                      quality.total):
            count.truth_boxes += len(phrase["boxes"])
            count.true_positives += matched


def quality_table(quality: PseudoQuality) -> str:
    """A Markdown table: one row per phrase kind, then all, then one per shape."""
    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    lines = [f"| phrases | pseudo boxes | true boxes | matched (IoU >= {quality.iou_threshold:g}) "
             "| precision | recall |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    rows = [(f"{kind} shape" if kind != "other" else "other", count) for kind, count in quality.kinds.items()]
    rows += [("all", quality.total)] + [(f"  {shape}", count) for shape, count in sorted(quality.shapes.items())]
    for name, count in rows:
        lines.append(f"| {name} | {count.pseudo_boxes} | {count.truth_boxes} | {count.true_positives} "
                     f"| {cell(count.precision)} | {cell(count.recall)} |")
    return "\n".join(lines)
