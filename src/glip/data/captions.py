"""Image captioning data: COCO captions JSON and a JSON Lines form, one record per image.

COCO captions JSON (``captions_train2017.json``): ``{"images": [{"id", "file_name", ...}],
"annotations": [{"image_id", "id", "caption"}]}``; an image's captions are its annotations, in
file order. An image without caption is kept with none (a test image to caption); an annotation
of an unknown image is a fault.

JSON Lines: ``{"image", "captions": [...], "image_id"?}`` a line, ``image`` relative to the file;
a missing ``image_id`` is the image path.

Faulty records go to a `RecordErrors` collector (``on_error``: ``"raise"``, ``"skip"`` or
``"raise_all"``), whose message names the file and the record (``"captions.json#annotation 3"``,
``"captions.jsonl:7"``).

Example:
    >>> records = read_captions("data/shapes/captions/captions.json")  # doctest: +SKIP
    >>> records[0].captions[0]  # doctest: +SKIP
    'a red star above a blue ring'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Union

from glip.data.coco_json import is_id, read_json_file
from glip.data.json_lines import read_unique_json_lines
from glip.data.validation import DataError, RecordErrors

Id = Union[int, str]


@dataclass(frozen=True)
class CaptionRecord:
    """One image and its reference captions.

    Attributes:
        image_id: unique in its file.
        image: the image file.
        captions: its reference captions, as written, in file order (empty: no reference).
    """

    image_id: Id
    image: Path
    captions: tuple[str, ...]


def read_captions(path: str | Path, image_dir: str | Path | None = None,
                  on_error: str = "raise") -> list[CaptionRecord]:
    """Read a ``.jsonl`` caption file or a COCO captions JSON file (images in ``image_dir``,
    default the JSON file's folder)."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return read_caption_jsonl(path, on_error)
    return read_coco_captions(path, image_dir, on_error)


def read_caption_jsonl(path: str | Path, on_error: str = "raise") -> list[CaptionRecord]:
    """The records of a caption JSON Lines file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"caption file {str(path)!r} does not exist", "missing file")
    return read_unique_json_lines(path, lambda value, _line: _jsonl_record(value, path.parent),
                                  key=lambda record: record.image_id, key_name="image_id", on_error=on_error)


def _jsonl_record(record: object, folder: Path) -> CaptionRecord:
    if not isinstance(record, dict):
        raise DataError("record is not a JSON object", "bad record")
    image = record.get("image")
    if not isinstance(image, str) or not image:
        raise DataError("record has no 'image' (a path relative to the file)", "record without 'image'")
    captions = record.get("captions")
    if not isinstance(captions, list) or not captions:
        raise DataError("'captions' is not a non-empty list of strings", "bad captions")
    for caption in captions:
        _check_caption(caption)
    image_id = record.get("image_id", image)
    if not is_id(image_id):
        raise DataError(f"image_id {image_id!r} is not an int or string", "bad image_id")
    return CaptionRecord(image_id, folder / image, tuple(captions))


def read_coco_captions(path: str | Path, image_dir: str | Path | None = None,
                       on_error: str = "raise") -> list[CaptionRecord]:
    """The images of a COCO captions JSON file with their captions, in the file's image order."""
    path = Path(path)
    data = read_json_file(path, "caption file")
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise DataError(f"{path}: not a COCO captions file (needs 'images' and 'annotations' lists)",
                        "malformed file")
    folder = Path(image_dir) if image_dir is not None else path.parent
    errors = RecordErrors(on_error, path)
    files: dict[Id, str] = {}
    for index, image in enumerate(data["images"]):
        try:
            if not isinstance(image, dict) or not is_id(image.get("id")) or not isinstance(image.get("file_name"), str):
                raise DataError("image is not an object with an 'id' and a 'file_name'", "bad image")
            if image["id"] in files:
                raise DataError(f"image id {image['id']!r} is not unique", "duplicate image id")
        except DataError as error:
            errors.reject(f"{path}#image {index}", error)
            continue
        files[image["id"]] = image["file_name"]
    captions: dict[Id, list[str]] = {image_id: [] for image_id in files}
    rejected = 0
    for index, annotation in enumerate(data["annotations"]):
        try:
            if not isinstance(annotation, dict):
                raise DataError("annotation is not a JSON object", "bad record")
            image_id = annotation.get("image_id")
            if image_id not in captions:
                raise DataError(f"image_id {image_id!r} is not an image of the file", "unknown image id")
            captions[image_id].append(_check_caption(annotation.get("caption")))
        except DataError as error:
            errors.reject(f"{path}#annotation {index}", error)
            rejected += 1
    errors.summarize(len(data["images"]) + len(data["annotations"]),
                     len(files) + len(data["annotations"]) - rejected)
    return [CaptionRecord(image_id, folder / name, tuple(captions[image_id])) for image_id, name in files.items()]


def _check_caption(caption: object) -> str:
    if not isinstance(caption, str) or not caption.strip():
        raise DataError(f"caption {caption!r} is not a non-empty string", "bad caption")
    return caption
