"""The ``vqa`` and ``captions`` splits: data for GLIPv2's understanding tasks on the shapes world.

Scenes (`sample_understanding_scene`): 2-7 objects whose shapes come from a palette of 1-4
trained shapes drawn per image (so that shapes repeat and counts vary), any colour, size and fill.
Only trained shapes appear, named by their training words.

Layout of ``OUT/vqa/`` (`generate_vqa_split`; questions from `glip.shapes.questions`):

- ``images/000001.png`` ...;
- ``questions.json``: VQA2.0 questions ``{"questions": [{"image_id", "question", "question_id"}],
  "images": [{"id", "file_name", "width", "height"}], ...}`` (``images`` is ours: VQA2.0 derives
  file names from COCO ids); question ``k`` of image ``i`` has id ``1000 * i + k``;
- ``annotations.json``: VQA2.0 annotations ``{"annotations": [{"question_id", "image_id",
  "question_type", "answer_type", "answers": [{"answer", "answer_confidence", "answer_id"} x10],
  "multiple_choice_answer"}]}``: the ten annotators agree, the answer following from the scene;
- ``vqa.jsonl``: ``{"image", "question", "answers": [x10], "question_type", "answer_type",
  "question_id", "image_id"}`` per question, ``image`` relative to the file;
- ``scenes.jsonl`` and ``info.json`` as in the other splits.

Layout of ``OUT/captions/`` (`generate_captions_split`):

- ``images/000001.png`` ...;
- ``captions.json``: COCO captions ``{"images", "annotations": [{"image_id", "id", "caption"}]}``,
  `CAPTIONS_PER_IMAGE` different reference captions per image, each mentioning every object once
  in the words of the ``ground-train`` captions (`glip.shapes.captions.grounding_caption`), with
  their own order, grouping, attributes, relations and opening words;
- ``captions.jsonl``: ``{"image", "captions": [...], "image_id"}`` per image;
- ``scenes.jsonl`` and ``info.json``.

Image ``k`` depends only on ``(seed, split, k)``, so a training set and a test set are two seeds
(e.g. 0 and 1) written under two roots.

Example:
    >>> generate_understanding_split("data/shapes", "vqa", 1000, seed=0)  # doctest: +SKIP
    PosixPath('data/shapes/vqa')
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from glip.shapes.captions import grounding_caption
from glip.shapes.generate import (FORMAT_VERSION, _prepare, _render_all, _save, _write_json, _write_jsonl,
                                  check_generation, image_file_name, image_rng)
from glip.shapes.questions import QUESTION_TYPES, scene_questions
from glip.shapes.scene import Scene, SceneObject, random_spec, render_scene
from glip.shapes.vocabulary import TRAINED_SHAPES

UNDERSTANDING_SPLITS: tuple[str, ...] = ("vqa", "captions")
PALETTE_SHAPES = (1, 4)  # fewest, most distinct shapes a scene draws its objects from
SCENE_OBJECTS = (2, 7)  # fewest, most objects a scene asks for (and the fewest it keeps)
ANNOTATORS = 10  # answers per question, as in VQA2.0
CAPTIONS_PER_IMAGE = 5
CAPTION_TRIES = 100  # draws allowed to find CAPTIONS_PER_IMAGE different captions
QUESTION_ID_STRIDE = 1000  # question k of image i has id 1000 * i + k, as in VQA2.0


def sample_understanding_scene(rng: np.random.Generator, image_size: int) -> Scene:
    """2-7 objects of 1-4 trained shapes, redrawn until at least 2 found a place."""
    while True:
        palette_size = int(rng.integers(PALETTE_SHAPES[0], PALETTE_SHAPES[1] + 1))
        palette = tuple(TRAINED_SHAPES[i] for i in sorted(rng.choice(len(TRAINED_SHAPES), palette_size,
                                                                      replace=False).tolist()))
        count = int(rng.integers(SCENE_OBJECTS[0], SCENE_OBJECTS[1] + 1))
        scene = render_scene(rng, [random_spec(rng, palette) for _ in range(count)], image_size)
        if len(scene.objects) >= SCENE_OBJECTS[0]:
            return scene


def reference_captions(rng: np.random.Generator, objects: list[SceneObject],
                       count: int = CAPTIONS_PER_IMAGE) -> list[str]:
    """``count`` different captions of the scene (fewer only if ``CAPTION_TRIES`` draws find fewer)."""
    captions: list[str] = []
    for _ in range(CAPTION_TRIES):
        caption = grounding_caption(rng, objects).caption
        if caption not in captions:
            captions.append(caption)
        if len(captions) == count:
            break
    return captions


def render_understanding_image(task: tuple[Path, str, int, int, int, str]) -> dict:
    """Draw and save one image; return its objects and its questions or captions.

    ``task`` is ``(split_dir, split, seed, image_id, image_size, image_format)``.
    """
    split_dir, split, seed, image_id, image_size, image_format = task
    rng = image_rng(seed, split, image_id)
    scene = sample_understanding_scene(rng, image_size)
    file_name = image_file_name(image_id, image_format)
    _save(scene.image, split_dir / file_name, image_format)
    result = {"id": image_id, "file_name": file_name, "width": image_size, "height": image_size,
              "objects": [o.to_dict() for o in scene.objects]}
    if split == "vqa":
        result["questions"] = [(q.question, q.answer, q.question_type, q.answer_type)
                               for q in scene_questions(rng, scene.objects)]
    else:
        result["captions"] = reference_captions(rng, scene.objects)
    return result


def generate_understanding_split(out_dir: str | os.PathLike, split: str, num_images: int, seed: int,
                                 image_size: int = 320, workers: int = 1, progress: bool = False,
                                 overwrite: bool = False, image_format: str = "png") -> Path:
    """Render ``num_images`` images of ``split`` (``"vqa"`` or ``"captions"``) under ``out_dir/split``.

    Args: as `glip.shapes.generate.generate_split`.

    Returns:
        The split directory.
    """
    if split not in UNDERSTANDING_SPLITS:
        raise ValueError(f"unknown understanding split {split!r}; choose from {', '.join(UNDERSTANDING_SPLITS)}")
    check_generation(num_images, image_format, image_size)
    split_dir = Path(out_dir) / split
    _prepare(split_dir, overwrite)
    info = {"split": split, "seed": seed, "num_images": num_images, "image_size": image_size,
            "image_format": image_format, "format_version": FORMAT_VERSION, "shapes": list(TRAINED_SHAPES),
            "palette_shapes": list(PALETTE_SHAPES), "scene_objects": list(SCENE_OBJECTS)}
    info |= {"question_types": list(QUESTION_TYPES), "annotators": ANNOTATORS} if split == "vqa" else \
        {"captions_per_image": CAPTIONS_PER_IMAGE}
    _write_json(split_dir / "info.json", info)  # first: it marks the directory as ours
    tasks = [(split_dir, split, seed, image_id, image_size, image_format) for image_id in range(1, num_images + 1)]
    images = _render_all(tasks, max(1, min(workers, num_images)), progress, split, render=render_understanding_image)
    if split == "vqa":
        _write_vqa(split_dir, images)
    else:
        _write_captions(split_dir, images)
    _write_jsonl(split_dir / "scenes.jsonl", [{"image_id": image["id"], "file_name": image["file_name"],
                                               "objects": image["objects"]} for image in images])
    return split_dir


def _image_records(images: list[dict]) -> list[dict]:
    return [{key: image[key] for key in ("id", "file_name", "width", "height")} for image in images]


def _write_vqa(split_dir: Path, images: list[dict]) -> None:
    questions, annotations, lines = [], [], []
    for image in images:
        for number, (question, answer, question_type, answer_type) in enumerate(image["questions"]):
            question_id = QUESTION_ID_STRIDE * image["id"] + number
            questions.append({"image_id": image["id"], "question": question, "question_id": question_id})
            annotations.append({
                "question_id": question_id, "image_id": image["id"], "question_type": question_type,
                "answer_type": answer_type, "multiple_choice_answer": answer,
                "answers": [{"answer": answer, "answer_confidence": "yes", "answer_id": k}
                            for k in range(1, ANNOTATORS + 1)]})
            lines.append({"image": image["file_name"], "question": question, "answers": [answer] * ANNOTATORS,
                          "question_type": question_type, "answer_type": answer_type, "question_id": question_id,
                          "image_id": image["id"]})
    header = {"info": {"description": "glip shapes world, split vqa"}, "task_type": "Open-Ended",
              "data_type": "shapes", "data_subtype": "vqa"}
    _write_json(split_dir / "questions.json", header | {"images": _image_records(images), "questions": questions})
    _write_json(split_dir / "annotations.json", header | {"annotations": annotations})
    _write_jsonl(split_dir / "vqa.jsonl", lines)


def _write_captions(split_dir: Path, images: list[dict]) -> None:
    annotations = [{"image_id": image["id"], "id": 0, "caption": caption}
                   for image in images for caption in image["captions"]]
    for number, annotation in enumerate(annotations, start=1):
        annotation["id"] = number
    _write_json(split_dir / "captions.json", {"info": {"description": "glip shapes world, split captions"},
                                              "images": _image_records(images), "annotations": annotations})
    _write_jsonl(split_dir / "captions.jsonl", [{"image": image["file_name"], "captions": image["captions"],
                                                 "image_id": image["id"]} for image in images])
