"""Running an exported detector without PyTorch: numpy pre- and post-processing around the graph.

The ONNX file written by ``glip export`` takes one normalised picture ``images`` [1, 3, H, W] and
gives, for every location of the five levels, its decoded boxes and centerness per prompt chunk
and its phrase scores (`glip.export.fixed_prompt.FixedPromptDetector`). The file's metadata
(``glip`` key, JSON, `ExportMetadata`) holds the phrases and everything these functions need.
This module needs numpy and Pillow only (and onnxruntime for `detect`):

    >>> import onnxruntime
    >>> from glip.export.runtime import detect
    >>> session = onnxruntime.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])  # doctest: +SKIP
    >>> for phrase, score, box in detect(session, "scene.png", threshold=0.5):  # doctest: +SKIP
    ...     print(phrase, round(score, 3), box)

`postprocess` is the engine's post-processing in numpy: candidates above the candidate threshold,
the top ``pre_nms_top_n`` per level by score x centerness, score = sqrt(phrase score x
centerness), boxes clipped to the resized picture, the class-aware NMS with "+1" areas and the
per-image cap, boxes scaled to the original picture.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

from glip.images import ImageSource, load_image, resized_size

METADATA_KEY = "glip"
FORMAT_VERSION = 1


@dataclass
class ExportMetadata:
    """What a program needs to run an exported graph, stored in the ONNX file as JSON."""

    model: str  # the model config's name
    phrases: list[str]  # label i is phrases[i]
    chunk_of_phrase: list[int]  # which prompt chunk (first axis of boxes/centerness) each phrase reads
    input_height: int  # the graph's fixed input size; pictures are resized into it and zero-padded
    input_width: int
    level_sizes: list[int]  # locations per level P3..P7: how the location axis splits
    pixel_mean: list[float]  # BGR, 0..255 scale
    pixel_std: list[float]
    min_size: int  # the model's resize rule: shorter side min_size, longer at most max_size
    max_size: int | None
    candidate_threshold: float  # post-processing settings of the model config
    pre_nms_top_n: int
    nms_threshold: float
    detections_per_image: int
    min_box_size: float
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "ExportMetadata":
        data = json.loads(text)
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"exported graph format {data.get('format_version')} is not {FORMAT_VERSION}: "
                             "export it again with this version of glip")
        return cls(**data)


def read_metadata(session: Any) -> ExportMetadata:
    """The `ExportMetadata` of an ``onnxruntime.InferenceSession`` of an exported file."""
    custom = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in custom:
        raise ValueError("this ONNX file has no glip metadata: it was not written by glip export")
    return ExportMetadata.from_json(custom[METADATA_KEY])


def preprocess(image: ImageSource, meta: ExportMetadata) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
    """A picture -> (input [1, 3, H, W] float32, resized (h, w), original (h, w)).

    The model's resize rule (as `glip.images.preprocess`, PIL bilinear), shrunk further when the
    result does not fit the graph's input size, then BGR, normalised and zero-padded bottom/right.
    """
    picture = load_image(image)
    original = (picture.height, picture.width)
    new_h, new_w = resized_size(picture.width, picture.height, meta.min_size, meta.max_size)
    if new_h > meta.input_height or new_w > meta.input_width:
        scale = min(meta.input_height / picture.height, meta.input_width / picture.width)
        new_h = min(meta.input_height, max(1, int(picture.height * scale)))
        new_w = min(meta.input_width, max(1, int(picture.width * scale)))
    if (new_w, new_h) != picture.size:
        picture = picture.resize((new_w, new_h), Image.Resampling.BILINEAR)
    bgr = np.asarray(picture, dtype=np.uint8)[:, :, ::-1].astype(np.float32)  # [h, w, 3]
    bgr = bgr / np.float32(255) * np.float32(255)  # ToTensor then TO_BGR255, as the PyTorch pipeline
    mean = np.asarray(meta.pixel_mean, dtype=np.float32)
    std = np.asarray(meta.pixel_std, dtype=np.float32)
    normalised = ((bgr - mean) / std).transpose(2, 0, 1)  # [3, h, w]
    tensor = np.zeros((1, 3, meta.input_height, meta.input_width), dtype=np.float32)
    tensor[0, :, :new_h, :new_w] = normalised
    return tensor, (new_h, new_w), original


def legacy_nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, threshold: float) -> np.ndarray:
    """Class-aware greedy NMS with "+1" areas (suppress IoU > threshold); kept indices, ascending."""
    kept = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        members = members[np.argsort(-scores[members], kind="stable")]
        b = boxes[members]
        left = np.maximum(b[:, None, 0], b[None, :, 0])
        right = np.minimum(b[:, None, 2], b[None, :, 2])
        top = np.maximum(b[:, None, 1], b[None, :, 1])
        bottom = np.minimum(b[:, None, 3], b[None, :, 3])
        intersection = np.clip(right - left + 1, 0, None) * np.clip(bottom - top + 1, 0, None)
        area = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
        overlaps = intersection / (area[:, None] + area[None, :] - intersection) > threshold  # [n, n]
        suppressed = np.zeros(len(members), dtype=bool)
        for row in range(len(members)):
            if not suppressed[row]:
                kept.append(members[row])
                suppressed |= overlaps[row]
    return np.sort(np.asarray(kept, dtype=np.int64))


def _candidates(boxes: np.ndarray, scores: np.ndarray, centerness: np.ndarray, phrases: np.ndarray,
                meta: ExportMetadata, resized: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One chunk's candidates: boxes [A, 4], scores [A, P'] of its phrases (global indices
    ``phrases``), centerness [A] -> (boxes [n, 4], scores [n], labels [n]) over all levels."""
    found = ([], [], [])
    start = 0
    for size in meta.level_sizes:
        level = slice(start, start + size)
        start += size
        level_scores = scores[level]  # [HW, P']
        rows, cols = np.nonzero(level_scores > meta.candidate_threshold)
        ranked = level_scores[rows, cols] * centerness[level][rows]
        if len(ranked) > meta.pre_nms_top_n:
            top = np.argsort(-ranked, kind="stable")[:meta.pre_nms_top_n]
            rows, cols, ranked = rows[top], cols[top], ranked[top]
        level_boxes = boxes[level][rows]
        level_boxes[:, 0::2] = level_boxes[:, 0::2].clip(0, resized[1] - 1)
        level_boxes[:, 1::2] = level_boxes[:, 1::2].clip(0, resized[0] - 1)
        large = ((level_boxes[:, 2] - level_boxes[:, 0] + 1 >= meta.min_box_size)
                 & (level_boxes[:, 3] - level_boxes[:, 1] + 1 >= meta.min_box_size))
        for part, values in zip(found, (level_boxes, np.sqrt(ranked), phrases[cols])):
            part.append(values[large])
    return tuple(np.concatenate(part) for part in found)


def postprocess(outputs: dict[str, np.ndarray], meta: ExportMetadata, resized: tuple[int, int],
                original: tuple[int, int]) -> dict[str, np.ndarray]:
    """The graph's outputs for one picture -> its detections, highest score first.

    Args:
        outputs: ``boxes`` [1, K, A, 4], ``scores`` [1, A, P], ``centerness`` [1, K, A].
        resized, original: the (h, w) `preprocess` returned.

    Returns:
        ``boxes`` [N, 4] xyxy in original-picture pixels, ``scores`` [N], ``labels`` [N] (index
        into ``meta.phrases``).
    """
    chunk_of_phrase = np.asarray(meta.chunk_of_phrase)
    parts = []
    for chunk in range(outputs["boxes"].shape[1]):
        phrases = np.flatnonzero(chunk_of_phrase == chunk)
        parts.append(_candidates(outputs["boxes"][0, chunk].astype(np.float32), outputs["scores"][0][:, phrases],
                                 outputs["centerness"][0, chunk], phrases, meta, resized))
    boxes, scores, labels = (np.concatenate([part[i] for part in parts]) for i in range(3))
    keep = legacy_nms(boxes, scores, labels, meta.nms_threshold)
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    limit = meta.detections_per_image
    if 0 < limit < len(scores):
        floor = np.sort(scores)[len(scores) - limit]  # the limit-th highest score; ties are kept
        boxes, scores, labels = boxes[scores >= floor], scores[scores >= floor], labels[scores >= floor]
    order = np.argsort(-scores, kind="stable")
    ratio = np.asarray([original[1] / resized[1], original[0] / resized[0]] * 2, dtype=np.float32)
    return {"boxes": boxes[order] * ratio, "scores": scores[order], "labels": labels[order]}


def detect(session: Any, image: ImageSource, threshold: float = 0.5) -> list[tuple[str, float, list[float]]]:
    """(phrase, score, [x1, y1, x2, y2] in the picture's pixels) of each detection above ``threshold``,
    with every (box, name) pair kept, from an ``onnxruntime.InferenceSession`` of an exported file."""
    meta = read_metadata(session)
    tensor, resized, original = preprocess(image, meta)
    names = [output.name for output in session.get_outputs()]
    outputs = dict(zip(names, session.run(names, {session.get_inputs()[0].name: tensor})))
    found = postprocess(outputs, meta, resized, original)
    return [(meta.phrases[int(label)], float(score), [float(v) for v in box])
            for box, score, label in zip(found["boxes"], found["scores"], found["labels"]) if score >= threshold]

