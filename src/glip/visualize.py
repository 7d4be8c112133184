"""Draw detections on a picture (boxes, phrase and score labels)."""

from __future__ import annotations

import colorsys

from PIL import Image, ImageDraw, ImageFont

from glip.predictor import ImageDetections


def phrase_colour(index: int) -> tuple[int, int, int]:
    """A distinct, stable colour per phrase index (golden-ratio hue steps)."""
    hue = (index * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_detections(image: Image.Image, result: ImageDetections, line_width: int | None = None) -> Image.Image:
    """A copy of ``image`` (RGB, original size) with every detection of ``result`` drawn."""
    canvas = image.convert("RGB").copy()
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
