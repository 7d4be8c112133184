"""Pseudo-labelled grounding data: the ODVG JSON Lines shards a teacher wrote (``glip label``).

A source is a directory of ``.jsonl`` shards, a glob of them (``labels/*.jsonl``) or one shard.
Each line is an ODVG grounding record (`glip.data.grounding`) whose regions carry the teacher's
``score``::

    {"filename": "images/00000/000000012.jpg", "height": 480, "width": 640, "key": "000000012",
     "shard": "00000", "grounding": {"caption": "a red ellipse left of a blue star",
                                     "regions": [{"bbox": [10, 20, 50, 60], "phrase": "a red ellipse",
                                                  "tokens_positive": [[0, 13]], "score": 0.83}]}}

One region per box; regions with the same ``tokens_positive`` are one phrase. ``filename`` is
relative to the shard's own folder (where the job extracts images from tar and Parquet inputs) or
absolute (images that were files already), unless an image folder is given. At load time regions
scored at or below ``min_score`` are dropped, and a record left without a region is dropped too
(counted and logged). The job's other files beside the shards (``errors.jsonl``, its log of bad
pairs; ``manifest.json``; temporary ``.tmp`` files) are never read as shards.

Example:
    >>> dataset = PseudoLabelledDataset("labels/web-*.jsonl", min_score=0.6)  # doctest: +SKIP
    >>> dataset.num_dropped_records  # doctest: +SKIP
    12
"""

from __future__ import annotations

import glob
import logging
import math
from pathlib import Path

from glip.data.grounding import SampleListDataset, check_odvg_record, odvg_sample, parse_json_line
from glip.data.sample import GroundingSample
from glip.data.transforms import Transform
from glip.data.validation import DataError, RecordErrors

logger = logging.getLogger(__name__)

SHARD_SUFFIX = ".jsonl"
LABELLING_ERRORS_FILE = "errors.jsonl"  # written beside the shards by the labelling job: not labels


def list_label_shards(location: str | Path) -> list[Path]:
    """The shard files of ``location`` (a directory, a glob or one ``.jsonl`` file), sorted.

    Raises:
        DataError: nothing matches, naming ``location``.
    """
    text = str(location)
    path = Path(text)
    if path.is_dir():
        candidates = list(path.glob(f"*{SHARD_SUFFIX}"))
    elif path.is_file():
        candidates = [path]
    else:
        candidates = [Path(name) for name in glob.glob(text, recursive=True)]
    shards = sorted(p for p in candidates
                    if p.is_file() and p.name.endswith(SHARD_SUFFIX) and p.name != LABELLING_ERRORS_FILE)
    if not shards:
        raise DataError(
            f"no pseudo-label shards at {text!r}: give a directory of {SHARD_SUFFIX} shards written by "
            f"`glip label`, or a glob such as 'labels/*{SHARD_SUFFIX}'",
            "missing file",
        )
    return shards


def _score(region: object) -> float:
    if not isinstance(region, dict):
        raise DataError(f"region {region!r} is not an object", "bad record")
    score = region.get("score")
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
        raise DataError(
            f"region {region.get('phrase', region)!r} has no numeric 'score' ({score!r})", "region without a score",
            "pseudo-labelled shards give each region the teacher's score; read gold data as type odvg",
        )
    return float(score)


def keep_confident_regions(record: object, min_score: float | None) -> tuple[object, int]:
    """``record`` with only the regions scored above ``min_score`` (None keeps all), and how many
    regions were dropped. Every region needs a numeric ``score``."""
    if not isinstance(record, dict):
        return record, 0
    grounding = record.get("grounding")
    regions = grounding.get("regions") if isinstance(grounding, dict) else None
    if not isinstance(regions, list):
        raise DataError("a pseudo-labelled record needs 'grounding.regions', a list", "bad record")
    scores = [_score(region) for region in regions]
    kept = [region for region, score in zip(regions, scores) if min_score is None or score > min_score]
    return {**record, "grounding": {**grounding, "regions": kept}}, len(regions) - len(kept)


class PseudoLabelledDataset(SampleListDataset):
    """Pseudo-labelled ODVG shards as training data (see the module docstring).

    Args:
        shards: a directory of ``.jsonl`` shards, a glob of them, or one shard.
        image_dir: the folder the records' ``filename`` are relative to; None = each shard's folder.
        min_score: regions scored at or below it are dropped at load time (None keeps all).
        on_error: ``"skip"`` drops a faulty record with a warning, ``"raise"`` raises `DataError`.
        seed: base seed of the augmentation (and of caption packing).
        transform: see `GroundingDatasetBase`.

    Attributes:
        shard_files: the shards read, sorted.
        num_dropped_regions: regions at or below ``min_score``.
        num_dropped_records: records left without a region (a record with none to start with too).
    """

    def __init__(
        self,
        shards: str | Path,
        image_dir: str | Path | None = None,
        min_score: float | None = None,
        on_error: str = "skip",
        seed: int = 0,
        transform: Transform | None = None,
    ) -> None:
        super().__init__(transform=transform, seed=seed)
        if min_score is not None and not (math.isfinite(min_score) and 0.0 <= min_score < 1.0):
            raise ValueError(f"min_score must be in [0, 1) or None, got {min_score!r}")
        self.location = str(shards)
        self.image_dir = Path(image_dir) if image_dir is not None else None
        self.min_score = min_score
        self.errors = RecordErrors(on_error, self.location)
        self.shard_files = list_label_shards(shards)
        self.samples = []
        self.num_dropped_regions = 0
        self.num_dropped_records = 0
        num_records = 0
        for shard in self.shard_files:
            num_records += self._read_shard(shard)
        # Records dropped for their scores are not faulty: the fault summary counts the others.
        self.errors.summarize(num_records - self.num_dropped_records, len(self.samples))
        if self.num_dropped_records:
            logger.info("%s: %d of %d records have no region scored above min_score=%s and are dropped",
                        self.location, self.num_dropped_records, num_records, min_score)
        if not self.samples:
            raise DataError(f"{self.location}: no pseudo-labelled records to train on (min_score={min_score})",
                            "empty dataset")
        logger.info("%s: %d pseudo-labelled records from %d shards (%d regions at or below min_score=%s dropped)",
                    self.location, len(self.samples), len(self.shard_files), self.num_dropped_regions, min_score)

    def _read_shard(self, shard: Path) -> int:
        """Read one shard into ``self.samples``; returns its number of records."""
        image_dir = self.image_dir if self.image_dir is not None else shard.parent
        num_records = 0
        with shard.open(encoding="utf-8") as handle:
            for line_number, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                num_records += 1
                source = f"{shard}:{line_number}"
                try:
                    sample = self._parse(text, image_dir, source)
                except DataError as error:
                    self.errors.reject(source, error)
                    continue
                if sample is None:
                    self.num_dropped_records += 1
                else:
                    self.samples.append(sample)
        return num_records

    def _parse(self, text: str, image_dir: Path, source: str) -> GroundingSample | None:
        """The sample of one line; None when no region survives ``min_score``."""
        record, dropped = keep_confident_regions(parse_json_line(text), self.min_score)
        line = check_odvg_record(record)
        sample = odvg_sample(line, image_dir, source) if line.regions else None
        self.num_dropped_regions += dropped
        return sample
