"""Image-text pairs to label: webdataset tar shards, JSON Lines files and Parquet files.

A *shard* is one input file; the labelling job writes one output file per shard. Three formats:

- **webdataset / img2dataset tar**: members grouped by key (the member name up to the first dot of
  its file name), ``{key}.jpg|.jpeg|.png|.webp`` the image, ``{key}.txt`` the caption, an optional
  ``{key}.json`` of metadata.
- **JSON Lines**: ``{"image": path, "caption": text}`` per line, paths relative to the file; the key
  of a pair is its 1-based line number.
- **Parquet** (img2dataset's output with ``--output_format parquet``): an image-bytes column
  (default ``jpg``) or a path column (relative to the file), a caption column (default ``caption``),
  and the key from a ``key`` column when there is one, else the row number (0-based).

Reading never stops on a bad pair: it yields a `PairError` (no image, no caption, bad JSON line) and
goes on; a shard that cannot be read at all (or stops being readable midway) ends with a
`PairError` whose ``key`` is None.

Example:
    >>> shards = list_shards(["web/"])  # doctest: +SKIP
    >>> next(read_shard(shards[0])).caption  # doctest: +SKIP
    'a red ellipse to the left of a blue star'
"""

from __future__ import annotations

import glob
import importlib.util
import json
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
SHARD_SUFFIXES = {".tar": "tar", ".jsonl": "jsonl", ".parquet": "parquet"}
# When a folder is given, the first kind found is read: img2dataset's webdataset output puts a
# metadata-only parquet beside every tar, which must not be read as pairs.
_FOLDER_ORDER = (".tar", ".parquet", ".jsonl")


@dataclass(frozen=True)
class Shard:
    """One input file: ``name`` (its file name without the extension) names its output."""

    path: Path
    kind: str  # "tar" | "jsonl" | "parquet"

    @property
    def name(self) -> str:
        return self.path.stem


@dataclass
class Pair:
    """One image-text pair: ``image`` is the encoded image (tar member, parquet bytes) or a file."""

    shard: str
    key: str
    image: bytes | Path
    caption: str | None
    meta: dict = field(default_factory=dict)
    image_extension: str | None = None  # of a tar member ("jpg"); None when unknown or a file


@dataclass
class PairError:
    """A pair (or, with ``key`` None, a whole shard) that could not be read."""

    shard: str
    key: str | None
    reason: str


@dataclass(frozen=True)
class ParquetColumns:
    """Column names of a Parquet input: image bytes (``image``) or a path (``path``), caption, key."""

    image: str = "jpg"
    path: str | None = None  # a column of image paths, used instead of ``image`` when given
    caption: str = "caption"
    key: str = "key"


def _shard(path: Path) -> Shard:
    kind = SHARD_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"{path}: not a shard (give .tar webdataset shards, .jsonl files or .parquet files)")
    return Shard(path, kind)


def _folder_shards(folder: Path) -> list[Shard]:
    for suffix in _FOLDER_ORDER:
        found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == suffix)
        if found:
            return [Shard(p, SHARD_SUFFIXES[suffix]) for p in found]
    raise ValueError(f"{folder}: no .tar, .parquet or .jsonl shard in this folder")


def list_shards(inputs: Sequence[str | Path]) -> list[Shard]:
    """The shards of ``inputs`` (files, folders or glob patterns), in order, each once.

    Raises:
        ValueError: an input that matches nothing, a file of another kind, or two shards with the
            same name (their outputs would collide).
    """
    shards: list[Shard] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            shards.extend(_folder_shards(path))
        elif path.is_file():
            shards.append(_shard(path))
        else:
            matches = sorted(glob.glob(str(item)))
            if not matches:
                raise FileNotFoundError(f"{item}: no such file, folder or matching shard")
            shards.extend(_shard(Path(m)) for m in matches if Path(m).is_file())
    unique = list({shard.path.resolve(): shard for shard in shards}.values())
    names: dict[str, Path] = {}
    for shard in unique:
        if shard.name in names:
            raise ValueError(f"two shards are named {shard.name!r} ({names[shard.name]} and {shard.path}): "
                             "their outputs would collide; label them into separate --out folders")
        names[shard.name] = shard.path
    if not unique:
        raise ValueError("no shard to label")
    if any(shard.kind == "parquet" for shard in unique) and importlib.util.find_spec("pyarrow") is None:
        raise ValueError('reading Parquet shards needs pyarrow: pip install "glip[parquet]"')
    return unique


def read_shard(shard: Shard, columns: ParquetColumns | None = None) -> Iterator[Pair | PairError]:
    """The pairs of ``shard`` in file order, a `PairError` for each bad one (see the module docstring)."""
    readers = {"tar": _read_tar, "jsonl": _read_jsonl, "parquet": _read_parquet}
    try:
        if shard.kind == "parquet":
            yield from _read_parquet(shard, columns or ParquetColumns())
        else:
            yield from readers[shard.kind](shard)
    except (OSError, tarfile.TarError, ValueError, KeyError, EOFError) as error:
        yield PairError(shard.name, None, f"unreadable shard {shard.path.name}: {error}")


# ---------------------------------------------------------------- webdataset tar
def _split_member(name: str) -> tuple[str, str]:
    """``dir/000012.jpg`` -> (``dir/000012``, ``jpg``); the key ends at the first dot of the file name."""
    folder, _, base = name.rpartition("/")
    stem, _, extension = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), extension.lower()


def _tar_pair(shard: Shard, key: str, members: dict[str, bytes]) -> Pair | PairError:
    extension = next((e for e in IMAGE_EXTENSIONS if e in members), None)
    if extension is None:
        return PairError(shard.name, key, f"no image member ({key}.jpg, .png or .webp)")
    caption = None
    if "txt" in members:
        try:
            caption = members["txt"].decode("utf-8")
        except UnicodeDecodeError:
            return PairError(shard.name, key, f"caption {key}.txt is not UTF-8 text")
    meta: dict = {}
    if "json" in members:
        try:
            loaded = json.loads(members["json"])
            meta = loaded if isinstance(loaded, dict) else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            meta = {}  # metadata is optional: a broken one is ignored, the pair is still labelled
    return Pair(shard.name, key, members[extension], caption, meta, "jpg" if extension == "jpeg" else extension)


def _read_tar(shard: Shard) -> Iterator[Pair | PairError]:
    key: str | None = None
    members: dict[str, bytes] = {}
    with tarfile.open(shard.path, "r|*") as archive:
        for member in archive:
            if not member.isfile():
                continue
            member_key, extension = _split_member(member.name)
            if member_key != key:
                if key is not None:
                    yield _tar_pair(shard, key, members)
                key, members = member_key, {}
            handle = archive.extractfile(member)
            members[extension] = handle.read() if handle is not None else b""
    if key is not None:
        yield _tar_pair(shard, key, members)


# ---------------------------------------------------------------- JSON Lines
def _read_jsonl(shard: Shard) -> Iterator[Pair | PairError]:
    folder = shard.path.parent.resolve()
    with open(shard.path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            key = str(number)
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                yield PairError(shard.name, key, f"invalid JSON ({error.msg} at column {error.colno})")
                continue
            if not isinstance(record, dict) or not isinstance(record.get("image"), str):
                yield PairError(shard.name, key, "line has no 'image' path")
                continue
            caption = record.get("caption")
            yield Pair(shard.name, key, folder / record["image"], caption if isinstance(caption, str) else None,
                       {k: v for k, v in record.items() if k not in ("image", "caption")})


# ---------------------------------------------------------------- Parquet
def _read_parquet(shard: Shard, columns: ParquetColumns) -> Iterator[Pair | PairError]:
    import pyarrow.parquet as parquet

    table = parquet.ParquetFile(shard.path)
    names = set(table.schema_arrow.names)
    image_column = columns.path or columns.image
    missing = [c for c in (image_column, columns.caption) if c not in names]
    if missing:
        raise ValueError(f"no column {', '.join(map(repr, missing))} (columns: {', '.join(sorted(names))}); "
                         "name the columns with --image-column/--path-column/--caption-column")
    wanted = [image_column, columns.caption] + ([columns.key] if columns.key in names else [])
    folder = shard.path.parent.resolve()
    row = 0
    for batch in table.iter_batches(batch_size=256, columns=wanted):
        data = batch.to_pydict()
        for index in range(batch.num_rows):
            key = data[columns.key][index] if columns.key in data else None
            key = str(row) if key is None else str(key)
            row += 1
            image = data[image_column][index]
            caption = data[columns.caption][index]
            if image is None:
                yield PairError(shard.name, key, f"no image in column {image_column!r}")
                continue
            if columns.path is not None:
                image = folder / str(image)
            elif not isinstance(image, bytes):
                yield PairError(shard.name, key, f"column {image_column!r} does not hold image bytes")
                continue
            yield Pair(shard.name, key, image, caption if isinstance(caption, str) else None)
