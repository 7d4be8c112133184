"""The metric records of a run: ``metrics.jsonl``, ``metrics.csv`` and (if installed) TensorBoard,
one row per logged step, telling one consistent history across resumes.

Example:
    >>> log = MetricsLog(Path("runs/x"), tensorboard=False, resume_step=None)  # doctest: +SKIP
    >>> log.log({"step": 1, "loss": 2.5}); log.close()  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

LOSS_TERMS = ("token", "box", "centerness")  # the GLIPLoss terms, in the order they are logged


class MetricsLog:
    """Metric records to ``metrics.jsonl``, ``metrics.csv`` and (if installed) TensorBoard.

    On resume, records past the resumed step (logged after the last checkpoint of a killed run)
    are dropped, so that the files tell one consistent history.
    """

    TRAINING_STATE = ("lr", "language_lr", "grad_norm", "images_per_s", "elapsed_s")  # after the loss terms
    COLUMNS = ("step", "epoch", "loss", *LOSS_TERMS, *TRAINING_STATE)
    _warned = False

    def __init__(self, directory: Path, tensorboard: bool, resume_step: int | None,
                 terms: tuple[str, ...] = LOSS_TERMS) -> None:
        # The loss terms of this run (e.g. with GLIPv2's "inter_image" and "mlm"), as CSV columns.
        self.columns = ("step", "epoch", "loss", *terms, *self.TRAINING_STATE)
        self.jsonl = directory / "metrics.jsonl"
        self.csv = directory / "metrics.csv"
        rows = self._kept_rows(resume_step)
        with self.jsonl.open("w") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in rows)
        with self.csv.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                if not MetricsLog._warned:
                    logger.warning("tensorboard is not installed: metrics go to metrics.jsonl/.csv only "
                                   "(pip install tensorboard)")
                    MetricsLog._warned = True
            else:
                self.writer = SummaryWriter(str(directory / "tensorboard"), purge_step=resume_step)

    def _kept_rows(self, resume_step: int | None) -> list[dict[str, Any]]:
        if resume_step is None or not self.jsonl.is_file():
            return []
        rows = []
        for line in self.jsonl.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by the kill
                continue
            if row.get("step", 0) <= resume_step:
                rows.append(row)
        return rows

    def log(self, row: dict[str, Any]) -> None:
        with self.jsonl.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        with self.csv.open("a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=self.columns, extrasaction="ignore").writerow(row)
        if self.writer is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.writer.add_scalar(f"train/{key}", value, row["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
