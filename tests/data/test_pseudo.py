"""Pseudo-labelled shards as training data: the min_score filter, shard discovery, mixing with gold
data by weight, caption packing drawn per (seed, epoch, index), and a training config that names them."""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import pytest

from data_helpers import make_image, write_lines
from glip.data import (
    CaptionPacking,
    DataError,
    GroundingCollator,
    MixedDataset,
    PseudoLabelledDataset,
    build_train_transforms,
)
from glip.data.training_set import build_training_dataset, packs_captions
from glip.training.train_config import DatasetSection, TrainConfigError, load_train_config


def _region(start: int, end: int, caption: str, score: float, box=(1, 2, 20, 30)) -> dict:
    return {"bbox": list(box), "phrase": caption[start:end], "tokens_positive": [[start, end]], "score": score}


def _pseudo(filename: str, caption: str, regions: list[tuple[int, int, float]], key: str = "k") -> dict:
    """An ODVG record as the labelling job writes it: regions with the teacher's score."""
    return {"filename": filename, "height": 48, "width": 64, "key": key, "shard": "web-0000.tar",
            "grounding": {"caption": caption,
                          "regions": [_region(s, e, caption, score) for s, e, score in regions]}}


def _shard_dir(root, name: str, records: list[dict]):
    """A folder with one shard and the images its records name (relative to the folder)."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for record in records:
        make_image(folder / record["filename"])
    write_lines(folder / f"{name}.jsonl", records)
    return folder


CAPTION = "a red ellipse left of a blue star and a green ring"


def test_min_score_keeps_only_regions_strictly_above(tmp_path, caplog) -> None:
    records = [
        # red ellipse 0.9 and green ring 0.51 survive; blue star at exactly 0.5 goes.
        _pseudo("images/a.png", CAPTION, [(2, 13, 0.9), (24, 33, 0.5), (40, 50, 0.51)]),
        # every region at or below 0.5: the record goes, counted and logged.
        _pseudo("images/b.png", CAPTION, [(2, 13, 0.3), (24, 33, 0.5)]),
        _pseudo("images/c.png", "two blue stars", [(0, 14, 0.7)]),
    ]
    folder = _shard_dir(tmp_path, "web-0000", records)
    with caplog.at_level(logging.INFO, logger="glip.data.pseudo"):
        dataset = PseudoLabelledDataset(folder, min_score=0.5)
    assert len(dataset) == 2
    first = dataset.get_sample(0)
    assert first.phrase_texts() == ["red ellipse", "green ring"]
    assert first.box_phrases == [0, 1] and first.caption == CAPTION
    assert first.image_path == folder / "images" / "a.png"  # relative to the shard's folder
    assert dataset.get_sample(1).phrase_texts() == ["two blue stars"]
    assert (dataset.num_dropped_regions, dataset.num_dropped_records) == (3, 1)
    assert "1 of 3 records have no region scored above min_score=0.5" in caplog.text
    everything = PseudoLabelledDataset(folder)  # no filter: every region the labelling kept
    assert len(everything) == 3 and everything.get_sample(0).num_boxes == 3


def test_nothing_above_min_score_is_a_clear_error(tmp_path) -> None:
    folder = _shard_dir(tmp_path, "web-0000", [_pseudo("images/a.png", CAPTION, [(2, 13, 0.6)])])
    with pytest.raises(DataError, match="no pseudo-labelled records to train on"):
        PseudoLabelledDataset(folder, min_score=0.6)
    with pytest.raises(ValueError, match="min_score must be in"):
        PseudoLabelledDataset(folder, min_score=1.0)


def test_a_region_without_a_score_is_a_faulty_record(tmp_path) -> None:
    record = _pseudo("images/a.png", CAPTION, [(2, 13, 0.9)])
    unscored = _pseudo("images/b.png", CAPTION, [(2, 13, 0.9)])
    del unscored["grounding"]["regions"][0]["score"]
    folder = _shard_dir(tmp_path, "web-0000", [record, unscored])
    assert len(PseudoLabelledDataset(folder, on_error="skip")) == 1
    with pytest.raises(DataError, match=r"web-0000.jsonl:2: region 'red ellipse' has no numeric 'score'"):
        PseudoLabelledDataset(folder, on_error="raise")


def test_shards_from_a_directory_a_glob_or_a_file(tmp_path) -> None:
    first = _shard_dir(tmp_path / "labels", "web-0000", [_pseudo("images/a.png", CAPTION, [(2, 13, 0.9)])])
    second = _shard_dir(tmp_path / "labels", "web-0001", [_pseudo("images/a.png", "a blue star", [(2, 11, 0.8)])])
    # The labelling job's own log of bad pairs lies beside the shards: never read as labels.
    write_lines(first / "errors.jsonl", [{"shard": "web-0000.tar", "key": "7", "reason": "corrupt image"}])
    by_glob = PseudoLabelledDataset(str(tmp_path / "labels" / "*" / "*.jsonl"))
    assert by_glob.shard_files == [first / "web-0000.jsonl", second / "web-0001.jsonl"]
    assert [s.caption for s in by_glob.samples] == [CAPTION, "a blue star"]
    assert [s.image_path for s in by_glob.samples] == [first / "images/a.png", second / "images/a.png"]
    assert PseudoLabelledDataset(first).shard_files == [first / "web-0000.jsonl"]
    assert len(PseudoLabelledDataset(second / "web-0001.jsonl")) == 1
    images = tmp_path / "elsewhere"
    make_image(images / "images" / "a.png")
    assert PseudoLabelledDataset(first, image_dir=images).get_sample(0).image_path == images / "images/a.png"
    # Images that were files already (JSON Lines inputs) are named by their absolute path.
    absolute = _shard_dir(tmp_path / "other", "pairs", [_pseudo(str(images / "images/a.png"), CAPTION, [(2, 13, 0.9)])])
    assert PseudoLabelledDataset(absolute).get_sample(0).image_path == images / "images/a.png"
    with pytest.raises(DataError, match="no pseudo-label shards at .*nowhere.*glob such as"):
        PseudoLabelledDataset(str(tmp_path / "nowhere" / "*.jsonl"))


def test_packing_is_drawn_per_seed_epoch_index_and_repeat(tmp_path) -> None:
    captions = [f"a red star number {index}" for index in range(30)]
    records = [_pseudo("images/a.png", caption, [(2, 10, 0.9)], key=str(i)) for i, caption in enumerate(captions)]
    folder = _shard_dir(tmp_path, "web-0000", records)

    def packed(epoch: int, repeat: int = 0, seed: int = 0) -> list[str]:
        dataset = PseudoLabelledDataset(folder, seed=seed)
        dataset.pack_captions(CaptionPacking(), 256)
        dataset.set_epoch(epoch)
        samples = [dataset.get_sample(index, repeat) for index in range(len(dataset))]
        assert all(s.phrase_texts() == ["red star"] for s in samples)
        return [s.caption for s in samples]

    assert packed(0) == packed(0)  # a fresh dataset (a resumed run) packs the same
    assert packed(0) != packed(1) and packed(0) != packed(0, repeat=1) and packed(0) != packed(0, seed=1)
    extra = Counter(caption.count("number") - 1 for caption in packed(0) + packed(1) + packed(2))
    assert extra[0] > 10 and extra[20] > 10 and sum(extra.values()) == 90


def _gold(tmp_path, count: int):
    """A gold ODVG file of ``count`` records (all on one image)."""
    make_image(tmp_path / "gold" / "g.png")
    records = [{"filename": "g.png", "height": 48, "width": 64,
                "grounding": {"caption": f"a blue ring {index}", "regions": [
                    {"bbox": [1, 2, 20, 30], "tokens_positive": [[2, 11]]}]}} for index in range(count)]
    return write_lines(tmp_path / "gold.jsonl", records), tmp_path / "gold"


def test_gold_and_pseudo_mixed_by_weight(tmp_path) -> None:
    annotations, images = _gold(tmp_path, 10)
    records = [_pseudo("images/a.png", f"a red star {i}", [(2, 10, 0.9)]) for i in range(30)]
    _shard_dir(tmp_path / "labels", "web-0000", records)
    sources = [DatasetSection(type="odvg", annotations=str(annotations), images=str(images), weight=3.0),
               DatasetSection(type="pseudo", annotations=str(tmp_path / "labels" / "*" / "*.jsonl"), weight=1.0)]
    mixed = build_training_dataset(sources, build_train_transforms([32], 48, 0.5), max_prompt_tokens=256)
    assert isinstance(mixed, MixedDataset) and len(mixed) == 40
    counts = Counter()
    for epoch in range(50):
        mixed.set_epoch(epoch)
        counts.update(mixed.locate(position)[0] for position in range(len(mixed)))
    # weights belong to the datasets, not to their items: 3:1 whatever their sizes (10 and 30)
    assert abs(counts[0] / 2000 - 0.75) < 0.04
    assert packs_captions(sources[1]) and not packs_captions(sources[0])


def test_a_config_naming_a_glob_of_shards_yields_training_batches(tmp_path, monkeypatch) -> None:
    annotations, images = _gold(tmp_path, 4)
    for number in range(2):
        records = [_pseudo("images/a.png", f"a red star left of a blue ring {number}{i}",
                           [(2, 10, 0.9), (21, 30, 0.4)]) for i in range(6)]
        _shard_dir(tmp_path / "labels", f"web-000{number}", records)
    config_file = tmp_path / "run.yaml"
    config_file.write_text(
        "data:\n  datasets:\n"
        f"    - {{type: odvg, annotations: {annotations}, images: {images}, weight: 1}}\n"
        f"    - {{type: pseudo, annotations: '{tmp_path}/labels/*/web-*.jsonl', min_score: 0.5, weight: 3,\n"
        "       packing: {no_negatives_prob: 0.0, all_negatives_prob: 1.0, max_negatives: 3}}\n"
    )
    config = load_train_config(config_file)
    pseudo = config.data.datasets[1]
    assert pseudo.type == "pseudo" and pseudo.min_score == 0.5 and pseudo.packing.max_negatives == 3
    dataset = build_training_dataset(config.data.datasets, build_train_transforms([32], 48, 0.0),
                                     max_prompt_tokens=64)
    examples = [dataset[index] for index in range(len(dataset))]
    pseudo_examples = [e for e in examples if "web-000" in e.source]
    gold_examples = [e for e in examples if "web-000" not in e.source]
    assert pseudo_examples and gold_examples
    for example in pseudo_examples:
        assert example.sample.phrase_texts() == ["red star"]  # the 0.4 region was filtered at load time
        assert example.sample.caption.count("blue ring") == 4  # its own caption and three packed
        assert example.sample.num_boxes == 1
    for example in gold_examples:  # gold data is not packed by default
        assert example.sample.caption.count("blue ring") == 1
    batch = GroundingCollator(max_length=64)(examples[:4])
    assert batch.input_ids.shape == (4, 64)
    assert all(target["positive_map"].shape[0] == target["boxes"].shape[0] for target in batch.targets)
    assert np.all([t["boxes"].shape[0] >= 1 for t in batch.targets])


@pytest.mark.parametrize("override, message", [
    ("data.datasets.0.min_score=0.5", "min_score filters pseudo-labelled regions: it applies to type pseudo only"),
    ("data.datasets.1.min_score=1.5", r"data.datasets.1.min_score must be in \[0, 1\)"),
    ("data.datasets.0.packing.enabled=true", "packing applies to odvg, mdetr and pseudo"),
    ("data.datasets.1.packing.all_negatives_prob=0.8", "sum is at most 1"),
    ("data.datasets.1.packing.max_negatives=0", "max_negatives must be >= 1"),
    ("data.datasets.1.packing.ratio=1", "unknown key 'data.datasets.1.packing.ratio'"),
])
def test_config_errors_of_pseudo_sources(tmp_path, override, message) -> None:
    config_file = tmp_path / "run.yaml"
    config_file.write_text("data:\n  datasets:\n    - {type: coco, annotations: a.json, images: i}\n"
                           "    - {type: pseudo, annotations: 'labels/*.jsonl'}\n")
    assert load_train_config(config_file).data.datasets[1].packing.enabled is None
    with pytest.raises(TrainConfigError, match=message):
        load_train_config(config_file, [override])
