"""Draw detections on a picture (boxes, phrase and score labels, instance masks when present)."""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from glip.predictor import ImageDetections


def phrase_colour(index: int) -> tuple[int, int, int]:
    """A distinct, stable colour per phrase index (golden-ratio hue steps)."""
    hue = (index * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


MASK_OPACITY = 0.45  # a mask's fill over the picture: the object stays visible under its colour


def draw_detections(image: Image.Image, result: ImageDetections, line_width: int | None = None) -> Image.Image:
    """A copy of ``image`` (RGB, original size) with every detection of ``result`` drawn: its mask
    (if it has a ``segmentation``) as a translucent fill, then its box and label over all fills."""
    canvas = image.convert("RGB").copy()
    for detection in sorted(result.detections, key=lambda d: d.score):
        if detection.segmentation is not None:
            _fill_mask(canvas, detection.segmentation, phrase_colour(detection.phrase_index))
    draw = ImageDraw.Draw(canvas)
    width = line_width or max(2, round(max(canvas.size) / 300))
    font = ImageFont.load_default(size=max(12, round(max(canvas.size) / 50)))
    for detection in sorted(result.detections, key=lambda d: d.score):
        colour = phrase_colour(detection.phrase_index)
        x1, y1, x2, y2 = detection.bbox_xyxy
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=width)
        label = f"{detection.phrase} {detection.score:.2f}"
        left, top, right, bottom = draw.textbbox((x1, y1), label, font=font)
        top_y = max(0, y1 - (bottom - top) - 4)
        draw.rectangle([x1, top_y, x1 + (right - left) + 6, top_y + (bottom - top) + 4], fill=colour)
        draw.text((x1 + 3, top_y + 1), label, fill=(0, 0, 0), font=font)
    return canvas


def _fill_mask(canvas: Image.Image, segmentation: dict, colour: tuple[int, int, int]) -> None:
    """Blend ``colour`` into ``canvas`` over a COCO RLE mask of the canvas's size (only over the
    mask's bounding rectangle, so a small object costs little in a big picture)."""
    from glip.data.masks import rle_to_mask

    mask = rle_to_mask(segmentation)  # [H, W] bool
    if mask.shape != (canvas.height, canvas.width):
        raise ValueError(f"a mask of {mask.shape[1]}x{mask.shape[0]} pixels cannot be drawn on a "
                         f"{canvas.width}x{canvas.height} picture: draw the result on the picture it was detected in")
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return
    box = (int(columns[0]), int(rows[0]), int(columns[-1]) + 1, int(rows[-1]) + 1)
    alpha = Image.fromarray(mask[box[1]:box[3], box[0]:box[2]].astype(np.uint8) * round(255 * MASK_OPACITY))
    canvas.paste(Image.new("RGB", alpha.size, colour), box[:2], alpha)
