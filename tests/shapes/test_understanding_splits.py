"""The vqa and captions splits: answers true to the scene, deterministic files, trained words only."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from glip.data.captions import read_captions
from glip.data.vqa import read_vqa
from glip.shapes.cli import main
from glip.shapes.generate import generate_split
from glip.shapes.vocabulary import COLOURS, COUNT_WORDS, FILLS, PLURALS, SIZES, TRAINING_FORBIDDEN_WORDS, TRAINED_SHAPES

IMAGES = 80
SINGULAR = {plural: shape for shape, plural in PLURALS.items()}
VALUES = {value: "size" for value in SIZES} | {value: "colour" for value in COLOURS} | {v: "fill" for v in FILLS}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("understanding")
    generate_split(root, "vqa", IMAGES, seed=3, image_size=128)
    generate_split(root, "captions", 20, seed=3, image_size=128)
    return root


def matching(objects: list[dict], phrase: str) -> list[int]:
    """Objects a phrase like "small red star" or "striped object" names (the test's own reading)."""
    *words, noun = phrase.split()
    wanted = {VALUES[word]: word for word in words}
    assert len(wanted) == len(words), phrase
    return [i for i, o in enumerate(objects) if (noun == "object" or o["shape"] == noun)
            and all(o[name] == value for name, value in wanted.items())]


def the(objects: list[dict], phrase: str) -> dict:
    found = matching(objects, phrase)
    assert len(found) == 1, f"{phrase!r} names {len(found)} objects"
    return objects[found[0]]


def centre(box: list[float]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def related(relation: str, box: list[float], reference: list[float]) -> bool:
    return {"above": box[3] <= reference[1], "below": box[1] >= reference[3],
            "to the left of": box[2] <= reference[0], "to the right of": box[0] >= reference[2]}[relation]


def solve(question: str, objects: list[dict]) -> str:
    """The answer re-derived from the scene's objects, independently of the generator."""
    if match := re.fullmatch(r"how many (\w+) objects are there\?", question):
        return str(sum(o["colour"] == match[1] for o in objects))
    if match := re.fullmatch(r"how many (\w+) (?:are there|can you see|are in the picture)\?", question):
        return str(sum(o["shape"] == SINGULAR[match[1]] for o in objects))
    if match := re.fullmatch(r"what (?:color is the|is the color of the) (.+)\?", question):
        return the(objects, match[1])["colour"]
    if match := re.fullmatch(r"what (?:kind of )?shape is the (.+)\?", question):
        return the(objects, match[1])["shape"]
    if match := re.fullmatch(r"(?:what size is the (.+)|is the (.+) small or large)\?", question):
        return the(objects, match[1] or match[2])["size"]
    if match := re.fullmatch(r"is the (.+) (solid|striped|dotted)\?", question):
        return "yes" if the(objects, match[1])["fill"] == match[2] else "no"
    if match := re.fullmatch(r"is there an? (.+)\?", question):
        return "yes" if matching(objects, match[1]) else "no"
    if match := re.fullmatch(r"what (?:shape )?is (above|below|to the left of|to the right of) the (.+)\?", question):
        relation, reference = match[1], the(objects, match[2])
        axis, sign = {"above": (1, -1), "below": (1, 1), "to the left of": (0, -1), "to the right of": (0, 1)}[relation]
        side = [o for o in objects if o is not reference and
                sign * (centre(o["bbox"])[axis] - centre(reference["bbox"])[axis]) > 0]
        assert len(side) == 1 and related(relation, side[0]["bbox"], reference["bbox"]), question
        return side[0]["shape"]
    raise AssertionError(f"unexpected question {question!r}")


def test_every_answer_follows_from_the_scene(root):
    scenes = {scene["image_id"]: scene["objects"] for scene in read_jsonl(root / "vqa" / "scenes.jsonl")}
    lines = read_jsonl(root / "vqa" / "vqa.jsonl")
    assert len(lines) >= 7 * IMAGES
    for line in lines:
        assert line["answers"] == [line["answers"][0]] * 10
        assert solve(line["question"], scenes[line["image_id"]]) == line["answers"][0], line
    types = Counter(line["question_type"] for line in lines)
    assert set(types) == {"count", "color", "shape", "fill", "size", "exist", "relation"}
    assert types["exist"] == 2 * IMAGES and types["relation"] >= IMAGES // 4, types
    counts = Counter(line["answers"][0] for line in lines if line["question_type"] == "count")
    assert len(counts) >= 4 and counts["0"] > 0, counts  # counts vary, absent shapes count 0


def test_yes_and_no_are_balanced(root):
    lines = read_jsonl(root / "vqa" / "vqa.jsonl")
    exist = Counter(line["answers"][0] for line in lines if line["question_type"] == "exist")
    assert exist == {"yes": IMAGES, "no": IMAGES}
    fill = Counter(line["answers"][0] for line in lines if line["question_type"] == "fill")
    assert set(fill) == {"yes", "no"} and 0.3 < fill["yes"] / sum(fill.values()) < 0.7, fill
    assert {line["answer_type"] for line in lines if line["answers"][0] in ("yes", "no")} == {"yes/no"}


def test_vqa_json_and_jsonl_say_the_same(root):
    from_json = read_vqa(root / "vqa" / "questions.json", root / "vqa" / "annotations.json")
    from_lines = read_vqa(root / "vqa" / "vqa.jsonl")
    assert [(q.question_id, q.image_id, q.question, q.image, q.answers, q.question_type, q.answer_type)
            for q in from_json] == [(q.question_id, q.image_id, q.question, q.image, q.answers, q.question_type,
                                     q.answer_type) for q in from_lines]
    assert all(q.image.is_file() for q in from_json)
    assert all(q.multiple_choice_answer == q.answers[0] for q in from_json)
    annotations = json.loads((root / "vqa" / "annotations.json").read_text())["annotations"]
    assert [a["answer_id"] for a in annotations[0]["answers"]] == list(range(1, 11))


def test_only_trained_shape_words(root):
    text = " ".join(line["question"] + " " + line["answers"][0] for line in read_jsonl(root / "vqa" / "vqa.jsonl"))
    text += " ".join(" ".join(line["captions"]) for line in read_jsonl(root / "captions" / "captions.jsonl"))
    words = set(re.findall(r"[a-z]+", text))
    assert not words & set(TRAINING_FORBIDDEN_WORDS)
    shape_words = {w for w in words if w in PLURALS or w in SINGULAR}
    assert shape_words and all(SINGULAR.get(w, w) in TRAINED_SHAPES for w in shape_words)
    scenes = read_jsonl(root / "vqa" / "scenes.jsonl") + read_jsonl(root / "captions" / "scenes.jsonl")
    assert {o["shape"] for scene in scenes for o in scene["objects"]} <= set(TRAINED_SHAPES)


def mentioned_shapes(caption: str) -> Counter:
    """Objects per shape that a caption mentions: "two stars" counts 2, "a small star" 1."""
    counted: Counter = Counter()
    words = re.findall(r"[a-z]+", caption)
    for index, word in enumerate(words):
        if word in ("a", "an") or word in COUNT_WORDS[2:]:
            # the determiner's noun: the first shape word within the next 4 words, all attributes between
            following = words[index + 1:index + 5]
            noun = next((w for w in following if w in PLURALS or w in SINGULAR), None)
            if noun is not None and all(w in VALUES for w in following[:following.index(noun)]):
                counted[SINGULAR.get(noun, noun)] += 1 if word in ("a", "an") else COUNT_WORDS.index(word)
    return counted


def test_five_different_captions_each_mention_every_object(root):
    scenes = {scene["image_id"]: scene["objects"] for scene in read_jsonl(root / "captions" / "scenes.jsonl")}
    records = read_captions(root / "captions" / "captions.json")
    assert records == read_captions(root / "captions" / "captions.jsonl")
    assert len(records) == 20
    for record in records:
        assert record.image.is_file() and len(set(record.captions)) == 5
        objects = Counter(o["shape"] for o in scenes[record.image_id])
        for caption in record.captions:
            assert mentioned_shapes(caption) == objects, (caption, objects)
    data = json.loads((root / "captions" / "captions.json").read_text())
    assert [a["id"] for a in data["annotations"]] == list(range(1, 101))


def test_same_seed_same_bytes_any_workers_other_seed_other_data(root, tmp_path):
    for split, count in (("vqa", IMAGES), ("captions", 20)):
        again = generate_split(tmp_path / "again", split, count, seed=3, image_size=128, workers=2)
        other = generate_split(tmp_path / "other", split, count, seed=4, image_size=128)
        files = ["questions.json", "annotations.json", "vqa.jsonl"] if split == "vqa" else \
            ["captions.json", "captions.jsonl"]
        names = ["scenes.jsonl", "images/000001.png", *files]
        for name in names:
            assert (again / name).read_bytes() == (root / split / name).read_bytes(), name
            assert (other / name).read_bytes() != (root / split / name).read_bytes(), name


def test_command_line(tmp_path, capsys):
    assert main(["generate", "--out", str(tmp_path), "--split", "vqa", "--num-images", "2", "--seed", "0",
                 "--size", "96", "--format", "jpg"]) == 0
    assert "vqa: 2 images" in capsys.readouterr().out
    assert (tmp_path / "vqa" / "images" / "000002.jpg").is_file()
    assert main(["generate", "--out", str(tmp_path), "--split", "captions", "--num-images", "2", "--seed", "0",
                 "--shard-size", "2"]) == 2
    assert "shard_size is for the web split only" in capsys.readouterr().err


def test_answers_form_a_small_vocabulary_and_score_with_the_official_metric(root):
    from glip.data.vqa_answers import AnswerVocabulary
    from glip.evaluation.vqa_metrics import vqa_accuracy

    questions = read_vqa(root / "vqa" / "questions.json", root / "vqa" / "annotations.json")
    vocabulary = AnswerVocabulary.build([q.answers for q in questions], min_count=1)
    words = set(TRAINED_SHAPES) | set(COLOURS) | set(SIZES) | {"yes", "no"} | {str(n) for n in range(9)}
    assert set(vocabulary.answers) <= words and set(vocabulary.answers[:2]) == {"yes", "no"}
    assert vqa_accuracy(questions, {q.question_id: q.multiple_choice_answer for q in questions}).overall == 1.0
    always_yes = vqa_accuracy(questions, {q.question_id: "yes" for q in questions})
    assert always_yes.per_question_type["exist"] == 0.5 and always_yes.per_answer_type["number"] == 0.0
