"""Visual question answering data: VQA2.0 JSON (questions + annotations files) and a JSON Lines form.

VQA2.0 JSON (as released by visualqa.org):

- questions file: ``{"questions": [{"image_id", "question", "question_id"}], "data_subtype"?,
  "images"?}``; ``images`` (``[{"id", "file_name"}]``, the shapes world writes it) names each
  image's file, else the file is ``image_pattern`` (default from ``data_subtype``, COCO's
  ``COCO_val2014_000000000042.jpg``);
- annotations file (optional: test questions have none): ``{"annotations": [{"question_id",
  "image_id", "question_type", "answer_type", "answers": [{"answer", "answer_id"}, ... x10],
  "multiple_choice_answer"}]}``; every question needs one annotation, and its ``image_id`` must
  be the question's.

JSON Lines, one question a line: ``{"image", "question", "answers": [...], "question_type"?,
"answer_type"?, "question_id"?, "image_id"?}`` with ``image`` relative to the file; a missing
``question_id`` is the line number, a missing ``image_id`` the image path.

Faulty records go to a `RecordErrors` collector (``on_error``: ``"raise"``, ``"skip"`` or
``"raise_all"``), whose message names the file and the record (``"q.json#question 3"``,
``"vqa.jsonl:7"``).

Example:
    >>> questions = read_vqa("data/shapes/vqa/questions.json", "data/shapes/vqa/annotations.json")  # doctest: +SKIP
    >>> questions[0].question, questions[0].multiple_choice_answer  # doctest: +SKIP
    ('how many stars are there?', '2')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Union

from glip.data.coco_json import is_id, read_json_file
from glip.data.json_lines import read_unique_json_lines
from glip.data.validation import DataError, RecordErrors
from glip.data.vqa_answers import most_common_answer

Id = Union[int, str]


@dataclass(frozen=True)
class VqaQuestion:
    """One checked question.

    Attributes:
        question_id: unique in its file.
        image_id: the image asked about.
        question: the question text, as written.
        image: the image file, or None when the file does not say (VQA2.0 JSON without ``images``
            nor ``data_subtype``).
        answers: the annotators' answers as written (10 in VQA2.0), or None for a question without
            annotation (a test set).
        multiple_choice_answer: the annotation's, else the most common normalised answer.
        question_type: e.g. ``"how many"`` (VQA2.0) or ``"count"`` (shapes); None when not given.
        answer_type: ``"yes/no"``, ``"number"`` or ``"other"`` in VQA2.0; None when not given.
    """

    question_id: Id
    image_id: Id
    question: str
    image: Path | None
    answers: tuple[str, ...] | None = None
    multiple_choice_answer: str | None = None
    question_type: str | None = None
    answer_type: str | None = None


def read_vqa(path: str | Path, annotations: str | Path | None = None, image_dir: str | Path | None = None,
             on_error: str = "raise", image_pattern: str | None = None) -> list[VqaQuestion]:
    """Read VQA questions from a ``.jsonl`` file or a VQA2.0 questions file (plus its annotations).

    Args:
        path: ``vqa.jsonl`` or ``questions.json``.
        annotations: the VQA2.0 annotations file (JSON form only; None: questions without answers).
        image_dir: folder of the images of the JSON form (default: the questions file's folder).
        on_error: what a faulty record does (see `glip.data.validation`).
        image_pattern: JSON form without ``images``: file name of an image, formatted with
            ``image_id`` (default ``"COCO_{data_subtype}_{image_id:012d}.jpg"``).
    """
    path = Path(path)
    if path.suffix == ".jsonl":
        if annotations is not None:
            raise ValueError(f"{path} is JSON Lines, whose records hold their answers: give no annotations file")
        return read_vqa_jsonl(path, on_error)
    return read_vqa_json(path, annotations, image_dir, on_error, image_pattern)


def read_vqa_jsonl(path: str | Path, on_error: str = "raise") -> list[VqaQuestion]:
    """The questions of a VQA JSON Lines file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"VQA file {str(path)!r} does not exist", "missing file")
    return read_unique_json_lines(path, lambda value, line: _jsonl_question(value, path.parent, line),
                                  key=lambda question: question.question_id, key_name="question_id",
                                  on_error=on_error)

def _jsonl_question(record: object, folder: Path, line_number: int) -> VqaQuestion:
    if not isinstance(record, dict):
        raise DataError("record is not a JSON object", "bad record")
    image = record.get("image")
    if not isinstance(image, str) or not image:
        raise DataError("record has no 'image' (a path relative to the file)", "record without 'image'")
    answers = _answer_texts(record.get("answers"))
    question_id = record.get("question_id", line_number)
    image_id = record.get("image_id", image)
    _check_id("question_id", question_id)
    _check_id("image_id", image_id)
    return VqaQuestion(question_id, image_id, _question_text(record), folder / image, answers,
                       most_common_answer(answers), _optional_text(record, "question_type"),
                       _optional_text(record, "answer_type"))


def read_vqa_json(questions_path: str | Path, annotations_path: str | Path | None = None,
                  image_dir: str | Path | None = None, on_error: str = "raise",
                  image_pattern: str | None = None) -> list[VqaQuestion]:
    """The questions of VQA2.0 JSON files, each with its annotation when ``annotations_path`` is given."""
    questions_path = Path(questions_path)
    data = read_json_file(questions_path, "VQA questions file")
    if not isinstance(data, dict) or not isinstance(data.get("questions"), list):
        raise DataError(f"{questions_path}: not a VQA questions file (no 'questions' list)", "malformed file")
    folder = Path(image_dir) if image_dir is not None else questions_path.parent
    file_names = _image_files(data, questions_path)
    if image_pattern is None and isinstance(data.get("data_subtype"), str):
        image_pattern = "COCO_" + data["data_subtype"] + "_{image_id:012d}.jpg"
    annotations = _read_annotations(Path(annotations_path), on_error) if annotations_path is not None else None
    errors = RecordErrors(on_error, questions_path)
    questions: list[VqaQuestion] = []
    seen: set[Id] = set()
    for index, record in enumerate(data["questions"]):
        source = f"{questions_path}#question {index}"
        try:
            question = _json_question(record, annotations, folder, file_names, image_pattern)
            if question.question_id in seen:
                raise DataError(f"question_id {question.question_id!r} is not unique", "duplicate question id")
        except DataError as error:
            errors.reject(source, error)
            continue
        seen.add(question.question_id)
        questions.append(question)
    known = {record.get("question_id") for record in data["questions"] if isinstance(record, dict)}
    for question_id in (annotations or {}).keys() - known:
        errors.reject(f"{annotations_path}#question {question_id!r}",
                      DataError("annotation of a question the questions file lacks", "annotation without question",
                                "give the questions file of the same split"))
    errors.summarize(len(data["questions"]), len(questions))
    return questions


def _json_question(record: object, annotations: dict[Id, dict] | None, folder: Path,
                   file_names: dict[Id, str], image_pattern: str | None) -> VqaQuestion:
    if not isinstance(record, dict):
        raise DataError("question is not a JSON object", "bad record")
    question_id, image_id = record.get("question_id"), record.get("image_id")
    _check_id("question_id", question_id)
    _check_id("image_id", image_id)
    text = _question_text(record)
    if image_id in file_names:
        image: Path | None = folder / file_names[image_id]
    elif image_pattern is not None:
        try:
            image = folder / image_pattern.format(image_id=image_id)
        except (ValueError, KeyError, IndexError) as exc:
            raise DataError(f"image_pattern {image_pattern!r} does not format image_id {image_id!r} ({exc})",
                            "bad image id") from None
    else:
        image = None
    if annotations is None:
        return VqaQuestion(question_id, image_id, text, image)
    annotation = annotations.get(question_id)
    if annotation is None:
        raise DataError(f"question {question_id!r} has no annotation", "question without annotation",
                        "give the annotations file of the same split")
    if annotation["image_id"] != image_id:
        raise DataError(f"question {question_id!r} is about image {image_id!r} but its annotation about "
                        f"image {annotation['image_id']!r}", "annotation of another image")
    return VqaQuestion(question_id, image_id, text, image, annotation["answers"],
                       annotation["multiple_choice_answer"], annotation["question_type"], annotation["answer_type"])


def _read_annotations(path: Path, on_error: str) -> dict[Id, dict]:
    """The checked annotations of a VQA2.0 annotations file, by question id."""
    data = read_json_file(path, "VQA annotations file")
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise DataError(f"{path}: not a VQA annotations file (no 'annotations' list)", "malformed file")
    errors = RecordErrors(on_error, path)
    annotations: dict[Id, dict] = {}
    for index, record in enumerate(data["annotations"]):
        try:
            annotation = _annotation(record)
            if annotation["question_id"] in annotations:
                raise DataError(f"question {annotation['question_id']!r} has two annotations",
                                "duplicate question id")
        except DataError as error:
            errors.reject(f"{path}#annotation {index}", error)
            continue
        annotations[annotation["question_id"]] = annotation
    errors.summarize(len(data["annotations"]), len(annotations))
    return annotations


def _annotation(record: object) -> dict:
    if not isinstance(record, dict):
        raise DataError("annotation is not a JSON object", "bad record")
    _check_id("question_id", record.get("question_id"))
    _check_id("image_id", record.get("image_id"))
    answers = record.get("answers")
    if not isinstance(answers, list) or not answers or not all(isinstance(a, dict) for a in answers):
        raise DataError("'answers' is not a non-empty list of {\"answer\", \"answer_id\"} objects", "bad answers")
    texts = _answer_texts([answer.get("answer") for answer in answers])
    chosen = record.get("multiple_choice_answer")
    if chosen is not None and not isinstance(chosen, str):
        raise DataError(f"'multiple_choice_answer' {chosen!r} is not a string", "bad answers")
    return {"question_id": record["question_id"], "image_id": record["image_id"], "answers": texts,
            "multiple_choice_answer": chosen if chosen is not None else most_common_answer(texts),
            "question_type": _optional_text(record, "question_type"),
            "answer_type": _optional_text(record, "answer_type")}


def _image_files(data: dict, path: Path) -> dict[Id, str]:
    """Image id -> file name from the questions file's ``images`` list (empty when it has none)."""
    images = data.get("images")
    if images is None:
        return {}
    if not isinstance(images, list) or not all(
            isinstance(image, dict) and is_id(image.get("id")) and isinstance(image.get("file_name"), str)
            for image in images):
        raise DataError(f"{path}: 'images' is not a list of {{\"id\", \"file_name\"}} objects", "malformed file")
    return {image["id"]: image["file_name"] for image in images}


def _answer_texts(answers: object) -> tuple[str, ...]:
    if not isinstance(answers, list) or not answers:
        raise DataError("'answers' is not a non-empty list", "bad answers")
    for answer in answers:
        if not isinstance(answer, str) or not answer.strip():
            raise DataError(f"answer {answer!r} is not a non-empty string", "bad answers")
    return tuple(answers)


def _question_text(record: dict) -> str:
    text = record.get("question")
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"'question' {text!r} is not a non-empty string", "bad question")
    return text


def _optional_text(record: dict, key: str) -> str | None:
    value = record.get(key)
    if value is not None and not isinstance(value, str):
        raise DataError(f"{key!r} {value!r} is not a string", f"bad {key}")
    return value


def _check_id(key: str, value: object) -> None:
    if not is_id(value):
        raise DataError(f"{key} {value!r} is missing or not an int or string", f"bad {key}")
