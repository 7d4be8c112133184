"""Instance masks in COCO form: check a ``segmentation``, decode it, encode a mask as RLE.

A COCO ``segmentation`` is one of:

- **polygons**: a list of polygons, each a flat list ``[x1, y1, x2, y2, ...]`` of at least
  three points in the image's continuous pixel coordinates, inside the image (within the boxes'
  1-pixel tolerance) when its size is known;
- **RLE**: ``{"size": [height, width], "counts": ...}`` with ``counts`` either the compressed
  string of pycocotools (``mask.encode``) or the uncompressed list of run lengths (COCO crowd
  annotations), runs alternating background / object, column-major, starting with background.

`check_segmentation` is cheap (no decoding) and is run when a file is read, so a faulty record
takes the readers' error path (`glip.data.validation.RecordErrors`); decoding waits until a
sample is read (`decode_masks`), so a dataset holds only the file's small segmentations in
memory. The counts are checked to sum to ``height * width`` before pycocotools sees them: its
decoder writes past its buffer otherwise.

A ground-truth mask (`read_segmentation`, the readers' entry) must also be of its object: not
empty (zero area) and inside its box (its extent within the box grown by `MASK_BOX_TOLERANCE`).
A mask that fails this would teach the mask head a wrong target, so it is a record fault, never
trained on quietly. Both come from the polygon coordinates or pycocotools' RLE area and bounding
box, still without decoding. (Predicted masks are checked with `check_segmentation` only: a model
may predict an empty mask.)

Example:
    >>> mask = np.zeros((4, 6), dtype=bool)
    >>> mask[1:3, 2:5] = True
    >>> rle = mask_to_rle(mask)
    >>> rle["size"], isinstance(rle["counts"], str)
    ([4, 6], True)
    >>> bool((rle_to_mask(rle) == mask).all())
    True
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from pycocotools import mask as coco_mask

from glip.data.validation import BOX_TOLERANCE, DataError

MIN_POLYGON_COORDINATES = 6  # three points: fewer have no area (and pycocotools reads 4 numbers as a box)
# How far (pixels, and share of the box's side) a ground-truth mask's extent may pass its box: a box
# drawn around a mask agrees with it to a pixel (RLE masks are whole pixels, boxes are continuous);
# a mask of another object, or in other coordinates, passes it by far more.
MASK_BOX_TOLERANCE = (2.0, 0.1)


def mask_to_rle(mask: np.ndarray) -> dict:
    """``[H, W]`` boolean (or 0/1) mask -> COCO RLE ``{"size": [H, W], "counts": str}`` (JSON-ready)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask is [H, W], got shape {tuple(mask.shape)}")
    rle = coco_mask.encode(np.asfortranarray(mask, dtype=np.uint8))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def rle_to_mask(rle: dict) -> np.ndarray:
    """COCO RLE (compressed or uncompressed counts) -> ``[H, W]`` bool mask; a faulty RLE is a `DataError`."""
    height, width = _rle_size(rle)
    return decode_segmentation(rle, height, width)


def read_segmentation(record: dict, width: int | None, height: int | None,
                      box: Sequence[float] | None = None) -> object | None:
    """A ground-truth record's checked ``segmentation``, or None when it has none (missing,
    ``null`` or ``[]``: box-only files often write an empty list).

    Args:
        width, height: the image's size if known (RLE must have it, polygons must lie inside it).
        box: the record's box ``x1, y1, x2, y2`` in pixels, if known: the mask must not be empty
            and must lie inside it (see the module docstring).

    Raises:
        DataError: kind ``"bad segmentation"`` (malformed), ``"empty mask"``, ``"mask outside its
            box"``.
    """
    segmentation = record.get("segmentation")
    if segmentation is None or (isinstance(segmentation, list) and not segmentation):
        return None
    check_segmentation(segmentation, width, height)
    extent = _extent(segmentation)  # None: an empty mask
    if extent is None:
        raise DataError("segmentation: the mask is empty (no area): give the object's outline, or no "
                        "segmentation for a box without a mask", "empty mask")
    if box is not None:
        _check_inside_box(extent, box)
    return segmentation


def check_segmentation(segmentation: object, width: int | None, height: int | None) -> None:
    """Check a COCO ``segmentation`` without decoding it (see the module docstring).

    ``width``/``height``: the image's size if known; an RLE must have that size.

    Raises:
        DataError: what is wrong with it, kind ``"bad segmentation"``.
    """
    if isinstance(segmentation, dict):
        size = _rle_size(segmentation)
        if width is not None and height is not None and size != (height, width):
            raise _fault(f"RLE size {list(size)} is not the image's [height, width] [{height}, {width}]")
        _rle_counts(segmentation["counts"], size[0] * size[1])
    elif isinstance(segmentation, list):
        if not segmentation:
            raise _fault("polygon list is empty")
        for polygon in segmentation:
            _check_polygon(polygon, width, height)
    else:
        raise _fault(f"segmentation of type {type(segmentation).__name__}: give polygons (a list of "
                     "[x1, y1, x2, y2, ...]) or RLE ({'size': [h, w], 'counts': ...})")


def decode_segmentation(segmentation: object, height: int, width: int) -> np.ndarray:
    """A checked COCO ``segmentation`` -> ``[height, width]`` bool mask."""
    rle = _pycocotools_rle(segmentation, height, width)
    with warnings.catch_warnings():  # pycocotools' decoder predates NumPy 2's copy keyword; harmless
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        return coco_mask.decode(rle).astype(bool)


def segmentation_to_rle(segmentation: object, height: int, width: int) -> dict:
    """A COCO ``segmentation`` as one compressed RLE (``counts`` a str), as pycocotools evaluates it."""
    rle = _pycocotools_rle(segmentation, height, width)
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _pycocotools_rle(segmentation: object, height: int, width: int) -> dict:
    """A segmentation as pycocotools' compressed RLE (``counts`` bytes), checked first."""
    check_segmentation(segmentation, width, height)
    if isinstance(segmentation, list):
        polygons = [[float(v) for v in polygon] for polygon in segmentation]
        rle = coco_mask.merge(coco_mask.frPyObjects(polygons, height, width))
    elif isinstance(segmentation["counts"], list):
        rle = coco_mask.frPyObjects(segmentation, height, width)
    else:
        rle = {"size": [height, width], "counts": segmentation["counts"].encode("ascii")}
    return rle


def decode_masks(segmentations: Sequence[object], height: int, width: int) -> np.ndarray:
    """``[N, height, width]`` uint8 masks (0/1) of N checked segmentations."""
    masks = np.zeros((len(segmentations), height, width), dtype=np.uint8)  # [N, H, W]
    for index, segmentation in enumerate(segmentations):
        masks[index] = decode_segmentation(segmentation, height, width)
    return masks


def _fault(message: str) -> DataError:
    return DataError(f"segmentation: {message}", "bad segmentation")


def _rle_size(rle: dict) -> tuple[int, int]:
    size, counts = rle.get("size"), rle.get("counts")
    if not isinstance(size, (list, tuple)) or len(size) != 2 or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
        raise _fault(f"RLE 'size' {size!r} is not [height, width] of positive integers")
    if not isinstance(counts, (str, list)):
        raise _fault(f"RLE 'counts' of type {type(counts).__name__}: give the compressed string or a list of "
                     "run lengths")
    return int(size[0]), int(size[1])


def _rle_counts(counts: str | list, num_pixels: int) -> None:
    """Check run lengths (a list, or pycocotools' compressed string) sum to ``num_pixels``."""
    if isinstance(counts, list):
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts):
            raise _fault("RLE 'counts' list holds something other than non-negative integers")
        runs = counts
    else:
        runs = _decompress_counts(counts)
    if sum(runs) != num_pixels:
        raise _fault(f"RLE runs cover {sum(runs)} pixels, not height * width = {num_pixels}")


def _decompress_counts(text: str) -> list[int]:
    """pycocotools' ``rleFrString``: 5 bits a character (offset 48), continuation bit 0x20, sign bit
    0x10 on the last character, each count after the second stored relative to the one two back."""
    runs: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(text):
                raise _fault("compressed RLE 'counts' ends in the middle of a number")
            code = ord(text[position]) - 48
            if not 0 <= code < 64:
                raise _fault(f"compressed RLE 'counts' has the character {text[position]!r}")
            value |= (code & 0x1F) << shift
            more = bool(code & 0x20)
            position += 1
            shift += 5
            if not more and code & 0x10:
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        if value < 0:
            raise _fault("compressed RLE 'counts' decodes to a negative run length")
        runs.append(value)
    return runs


def _extent(segmentation: object) -> tuple[float, float, float, float] | None:
    """A checked segmentation's extent ``x1, y1, x2, y2`` (continuous pixels), None when it has no area."""
    if isinstance(segmentation, list):
        points = [np.asarray(polygon, dtype=np.float64).reshape(-1, 2) for polygon in segmentation]  # [P, 2] each
        # shoelace area of each polygon: collinear or repeated points enclose nothing
        if not any(abs(np.dot(p[:, 0], np.roll(p[:, 1], -1)) - np.dot(p[:, 1], np.roll(p[:, 0], -1))) > 0
                   for p in points):
            return None
        stacked = np.concatenate(points)
        return (*stacked.min(axis=0).tolist(), *stacked.max(axis=0).tolist())
    height, width = _rle_size(segmentation)
    rle = _pycocotools_rle(segmentation, height, width)
    if int(coco_mask.area(rle)) == 0:
        return None
    x, y, w, h = (float(v) for v in coco_mask.toBbox(rle))  # the pixels' extent
    return x, y, x + w, y + h


def _check_inside_box(extent: tuple[float, float, float, float], box: Sequence[float]) -> None:
    x1, y1, x2, y2 = (float(v) for v in box)
    pixels, share = MASK_BOX_TOLERANCE
    grow_x, grow_y = pixels + share * max(x2 - x1, 0.0), pixels + share * max(y2 - y1, 0.0)
    if extent[0] < x1 - grow_x or extent[1] < y1 - grow_y or extent[2] > x2 + grow_x or extent[3] > y2 + grow_y:
        shown = ", ".join(f"{v:g}" for v in extent)
        raise DataError(f"segmentation: the mask spans [{shown}], beyond its box [{x1:g}, {y1:g}, {x2:g}, {y2:g}] "
                        "(x1, y1, x2, y2): the mask is not of this box's object", "mask outside its box",
                        "check that the mask and the box are of the same object, in the same image coordinates")


def _check_polygon(polygon: object, width: int | None, height: int | None) -> None:
    if not isinstance(polygon, list) or not polygon or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in polygon):
        raise _fault(f"polygon {_short(polygon)} is not a non-empty list of finite numbers [x1, y1, x2, y2, ...]")
    if len(polygon) % 2:
        raise _fault(f"polygon of {len(polygon)} numbers: give (x, y) pairs")
    if len(polygon) < MIN_POLYGON_COORDINATES:
        raise _fault(f"polygon {_short(polygon)} has {len(polygon) // 2} point{'s' if len(polygon) > 2 else ''}: a "
                     "polygon needs at least 3 (remove it, or give the object's outline)")
    if width is not None and height is not None:
        xs, ys = polygon[0::2], polygon[1::2]
        if min(xs) < -BOX_TOLERANCE or min(ys) < -BOX_TOLERANCE or max(xs) > width + BOX_TOLERANCE \
                or max(ys) > height + BOX_TOLERANCE:
            raise _fault(f"polygon {_short(polygon)} lies outside the {width}x{height} image (beyond the "
                         f"{BOX_TOLERANCE:g}-pixel tolerance)")


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
