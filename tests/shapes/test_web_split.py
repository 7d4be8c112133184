"""The web split: pairs without boxes, novel shapes in its captions, truth kept apart and true to the scene."""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from glip.shapes.cli import main
from glip.shapes.generate import generate_split, image_rng
from glip.shapes.vocabulary import NOVEL_SHAPES, PLURALS, SPLITS, SYNONYMS, TRAINED_SHAPES
from glip.shapes.web import sample_web_scene

PAIRS = 40
# sha256 (first 16 hex digits) of annotations.json + grounding.jsonl + scenes.jsonl, 3 images of 128 px, seed 5
PINNED = {"det-train": "11e18107d51e6d73", "ground-train": "8a194231360f14c1", "attributes-train": "a96541c23e3997ab",
          "det-test": "483ed3b81435ed81", "zeroshot-grounded": "fde9ac56d4f46824",
          "zeroshot-novel": "bad57b2ccc04262c", "synonyms": "cc4a62cbdbc91b6b", "attributes": "6bb87dfd4d826cd0"}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


@pytest.fixture(scope="module")
def web_dir(tmp_path_factory) -> Path:
    return generate_split(tmp_path_factory.mktemp("web"), "web", PAIRS, seed=0, image_size=160, shard_size=16)


def test_same_seed_same_bytes_any_workers_other_seed_other_pairs(tmp_path, web_dir):
    again = generate_split(tmp_path / "again", "web", PAIRS, seed=0, image_size=160, shard_size=16, workers=2)
    other = generate_split(tmp_path / "other", "web", PAIRS, seed=1, image_size=160, shard_size=16)
    for name in ("pairs.jsonl", "truth/truth.jsonl", "images/000001.jpg", "images/000040.jpg",
                 "shards/web-000000.tar", "shards/web-000002.tar"):
        assert (again / name).read_bytes() == (web_dir / name).read_bytes(), name
    assert (other / "pairs.jsonl").read_bytes() != (web_dir / "pairs.jsonl").read_bytes()
    assert (other / "images/000001.jpg").read_bytes() != (web_dir / "images/000001.jpg").read_bytes()


def test_training_files_hold_no_boxes(web_dir):
    pairs = read_jsonl(web_dir / "pairs.jsonl")
    assert len(pairs) == PAIRS
    assert all(set(pair) == {"image", "caption", "key"} for pair in pairs)
    assert [pair["key"] for pair in pairs] == [f"{k:06d}" for k in range(1, PAIRS + 1)]
    assert all((web_dir / pair["image"]).is_file() for pair in pairs)  # relative to the file
    names = []
    for shard in sorted((web_dir / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                names.append(member.name)
                data = tar.extractfile(member).read()
                if member.name.endswith(".json"):
                    assert set(json.loads(data)) == {"key", "caption"}
                if member.name.endswith(".txt"):
                    assert data.decode() == pairs[int(member.name[:6]) - 1]["caption"]
    assert len(names) == 3 * PAIRS and [n.split(".")[0] for n in names[::3]] == [p["key"] for p in pairs]
    assert {Path(name).suffix for name in names} == {".jpg", ".txt", ".json"}
    assert len(list((web_dir / "shards").glob("*.tar"))) == 3  # 16 + 16 + 8
    assert not (web_dir / "annotations.json").exists() and not (web_dir / "scenes.jsonl").exists()


def test_the_labeller_finds_only_the_pairs_in_the_split_folder(web_dir):
    from glip.labelling.sources import list_shards

    assert [shard.path.name for shard in list_shards([web_dir])] == ["pairs.jsonl"]
    assert len(list_shards([web_dir / "shards"])) == 3


def test_captions_mention_novel_shapes_in_context(web_dir):
    truth = read_jsonl(web_dir / "truth" / "truth.jsonl")
    novel_counts = [sum(r["kind"] == "novel" for r in t["grounding"]["regions"]) for t in truth]
    assert sum(count == 1 for count in novel_counts) >= 0.5 * PAIRS  # most: one novel shape
    assert sum(count >= 1 for count in novel_counts) >= 0.7 * PAIRS
    with_trained = [t for t, count in zip(truth, novel_counts) if count == 1
                    and any(r["kind"] == "trained" for r in t["grounding"]["regions"])]
    assert len(with_trained) == sum(count == 1 for count in novel_counts)  # never alone
    related = [t for t in with_trained if re.search(r"(ellipse|trapezoid|octagon) (above|below|to the)|"
                                                   r"(above|below|of) an? [a-z ]*(ellipse|trapezoid|octagon)",
                                                   t["grounding"]["caption"])]
    assert len(related) >= 0.4 * len(with_trained)  # "a red ellipse to the left of a blue star"
    caption_words = set().union(*(words(t["grounding"]["caption"]) for t in truth))
    assert set(NOVEL_SHAPES) <= caption_words
    assert not caption_words & words(" ".join(SYNONYMS))  # synonyms stay unseen


def test_truth_boxes_and_spans_agree_with_the_scene(web_dir):
    for record in read_jsonl(web_dir / "truth" / "truth.jsonl"):
        image_id = record["image_id"]
        scene = sample_web_scene(image_rng(0, "web", image_id), 160)
        assert [round(v, 2) for o in scene.objects for v in o.box] == [v for o in record["objects"] for v in o["bbox"]]
        assert [o.spec.shape for o in scene.objects] == [o["shape"] for o in record["objects"]]
        drawn = np.asarray(Image.open(web_dir / record["filename"]), dtype=np.float64)
        neighbour = sample_web_scene(image_rng(0, "web", image_id % PAIRS + 1), 160)
        # the JPEG is this scene (pixel noise and chroma subsampling cost about 6 levels), not another
        assert np.abs(drawn - scene.image).mean() < 0.5 * np.abs(drawn - neighbour.image).mean()
        caption = record["grounding"]["caption"]
        regions = record["grounding"]["regions"]
        assert sorted(map(tuple, (r["bbox"] for r in regions))) == sorted(tuple(o["bbox"]) for o in record["objects"])
        for region in regions:
            (start, end), = region["tokens_positive"]
            assert caption[start:end] == region["phrase"]
            assert region["phrase"].split()[-1] in (region["shape"], PLURALS[region["shape"]])
            assert region["kind"] == ("novel" if region["shape"] in NOVEL_SHAPES else "trained")
            assert region["shape"] in NOVEL_SHAPES + TRAINED_SHAPES
        assert record["shard"] == f"web-{(image_id - 1) // 16:06d}"


def _without_masks(path: Path) -> bytes:
    """The file's bytes as they were before masks were written: every ``segmentation`` removed."""
    def strip(value):
        if isinstance(value, dict):
            return {key: strip(item) for key, item in value.items() if key != "segmentation"}
        return [strip(item) for item in value] if isinstance(value, list) else value

    def dump(value) -> str:
        return json.dumps(strip(value), separators=(",", ":")) + "\n"

    if path.suffix == ".jsonl":
        return "".join(dump(record) for record in read_jsonl(path)).encode()
    return dump(json.loads(path.read_text())).encode()


@pytest.mark.parametrize("split", list(SPLITS))
def test_other_split_annotations_are_byte_identical(tmp_path, split):
    """Annotations of every other split for seed 5, pinned before the web split was added (and
    before masks were: they are removed before hashing, so boxes and captions are unchanged)."""
    split_dir = generate_split(tmp_path, split, 3, seed=5, image_size=128)
    digest = hashlib.sha256()
    for name in ("annotations.json", "grounding.jsonl", "scenes.jsonl"):
        if (split_dir / name).exists():
            digest.update(_without_masks(split_dir / name))
    assert digest.hexdigest()[:16] == PINNED[split]


def test_cli_writes_shards_and_refuses_them_for_box_splits(tmp_path, capsys):
    argv = ["generate", "--out", str(tmp_path), "--split", "web", "--num-images", "5", "--seed", "2",
            "--size", "96", "--shard-size", "2"]
    assert main(argv) == 0
    assert sorted(p.name for p in (tmp_path / "web" / "shards").iterdir()) == [
        "web-000000.tar", "web-000001.tar", "web-000002.tar"]
    assert len(list((tmp_path / "web" / "images").glob("*.jpg"))) == 5
    assert "5 pairs" in capsys.readouterr().out
    assert main(["generate", "--out", str(tmp_path), "--split", "det-test", "--num-images", "2", "--seed", "2",
                 "--shard-size", "2"]) == 2
    assert main(argv[:-1] + ["0", "--overwrite"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "web split only" in errors[0] and "shard_size" in errors[1]
    assert not (tmp_path / "det-test").exists()
