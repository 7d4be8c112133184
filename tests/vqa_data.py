"""A small VQA dataset on disk for the tests: a few 64 px pictures and their questions, as JSON Lines
and as VQA2.0 JSON (questions + annotations)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

QUESTIONS = [("how many stars are there?", "2", "count", "number"),
             ("is there a red square?", "yes", "exist", "yes/no"),
             ("what colour is the star?", "red", "color", "other"),
             ("is there a blue circle?", "no", "exist", "yes/no")]


def write_vqa_data(root: Path, images: int = 3) -> Path:
    """``root/vqa.jsonl``, ``root/questions.json``, ``root/annotations.json`` and the pictures;
    returns ``root``. Every image gets every question, 10 annotators each (9 agree)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    records, questions, annotations, image_list = [], [], [], []
    for image_id in range(1, images + 1):
        name = f"images/{image_id:03d}.png"
        pixels = np.random.default_rng(image_id).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / name)
        image_list.append({"id": image_id, "file_name": name})
        for index, (text, answer, question_type, answer_type) in enumerate(QUESTIONS):
            question_id = image_id * 100 + index
            answers = [answer] * 9 + ["maybe"]
            records.append({"image": name, "question": text, "answers": answers, "question_type": question_type,
                            "answer_type": answer_type, "question_id": question_id, "image_id": image_id})
            questions.append({"image_id": image_id, "question": text, "question_id": question_id})
            annotations.append({"question_id": question_id, "image_id": image_id, "question_type": question_type,
                                "answer_type": answer_type, "multiple_choice_answer": answer,
                                "answers": [{"answer": a, "answer_id": i + 1} for i, a in enumerate(answers)]})
    (root / "vqa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (root / "questions.json").write_text(json.dumps({"questions": questions, "images": image_list}))
    (root / "annotations.json").write_text(json.dumps({"annotations": annotations}))
    return root
