"""GroundingCollator: batch shapes, binary positive maps on each phrase's tokens, empty images."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from data_helpers import coco_dataset_files
from glip.data import (
    CocoDetectionDataset,
    GroundingCollator,
    GroundingExample,
    GroundingSample,
    build_train_transforms,
)
from glip.prompts import Prompt, tokenize_prompt


def _example(caption, spans, boxes, box_phrases, size=(40, 60), source="t.jsonl:1"):
    sample = GroundingSample(
        image_path=Path("x.png"), caption=caption, phrase_spans=spans,
        boxes=np.array(boxes, dtype=np.float32).reshape(-1, 4), box_phrases=box_phrases,
        image_id=source, source=source, width=size[1], height=size[0],
    )
    return GroundingExample(image=torch.randn(3, *size), sample=sample, original_size=(size[0] // 2, size[1] // 2))


def test_collate_shapes_and_binary_positive_maps():
    caption = "a red star and two blue rings next to a red star"
    spans = [[(2, 10), (40, 48)], [(19, 29)]]
    examples = [
        _example(caption, spans, [[1, 2, 20, 30], [30, 5, 40, 15], [42, 5, 55, 15]], [0, 1, 1], (40, 60)),
        _example("nothing here", [], [], [], (70, 33), source="t.jsonl:2"),
    ]
    batch = GroundingCollator()(examples)
    assert batch.images.shape == (2, 3, 96, 64)
    assert batch.image_sizes == [(40, 60), (70, 33)] and batch.original_sizes == [(20, 30), (35, 16)]
    assert batch.input_ids.shape == (2, 256) and batch.attention_mask.shape == (2, 256)
    assert batch.input_ids.dtype == torch.int64 and batch.attention_mask.dtype == torch.int64
    first, empty = batch.targets
    assert first["boxes"].shape == (3, 4) and first["boxes"].dtype == torch.float32
    assert first["positive_map"].shape == (3, 256) and first["positive_map"].dtype == torch.float32
    assert set(first["positive_map"].unique().tolist()) == {0.0, 1.0}
    assert first["phrase_index"].tolist() == [0, 1, 1] and first["phrase_index"].dtype == torch.int64
    # The rows are the tokens of each box's phrase, as the inference positive map sees them.
    reference = tokenize_prompt(Prompt(caption, ["red star", "blue rings"], spans))
    for row, phrase in zip(first["positive_map"], [0, 1, 1]):
        assert torch.nonzero(row).flatten().tolist() == reference.token_indices[phrase]
    assert reference.token_indices[0] == [2, 3, 11, 12]
    assert torch.equal(batch.input_ids[0], reference.input_ids)
    # An image without boxes still collates.
    assert empty["boxes"].shape == (0, 4) and empty["positive_map"].shape == (0, 256)
    assert empty["phrase_index"].shape == (0,)
    assert batch.sources == ["t.jsonl:1", "t.jsonl:2"]
    assert "t.jsonl:2" in batch.describe()
    moved = batch.to("cpu")
    assert moved.targets[0]["boxes"].shape == (3, 4)


def test_boxes_of_phrases_beyond_the_window_are_dropped(caplog):
    words = " ".join(["word"] * 300)
    caption = f"a cat and {words} and a dog"
    cat, dog = (2, 5), (len(caption) - 3, len(caption))
    example = _example(caption, [[cat], [dog]], [[1, 1, 5, 5], [6, 6, 9, 9]], [0, 1])
    with caplog.at_level(logging.WARNING, logger="glip.data"):
        batch = GroundingCollator()([example])
    target = batch.targets[0]
    assert target["phrase_index"].tolist() == [0]
    assert target["positive_map"].shape == (1, 256) and target["positive_map"][0, 2] == 1
    assert "t.jsonl:1: dropping 1 box(es)" in caplog.text and "'dog'" in caplog.text


def test_collate_a_coco_dataset(tmp_path):
    images = [{"id": i, "file_name": f"{i}.png", "width": 64, "height": 48} for i in (1, 2)]
    annotations = [{"image_id": 1, "category_id": 2, "bbox": [2, 3, 20, 10]},
                   {"image_id": 1, "category_id": 5, "bbox": [30, 5, 10, 30]}]
    names = ["person", "traffic_light", "dog", "cat", "hair drier", "kite"]
    annotation_file, image_dir = coco_dataset_files(tmp_path, names, images, annotations)
    dataset = CocoDetectionDataset(annotation_file, image_dir,
                                   transform=build_train_transforms(min_sizes=(64, 96), max_size=300))
    batch = GroundingCollator()([dataset[0], dataset[1]])
    assert batch.images.shape[0] == 2 and batch.images.shape[2] % 32 == 0 and batch.images.shape[3] % 32 == 0
    target = batch.targets[0]
    assert target["boxes"].shape == (2, 4)
    # Each box's row covers exactly the tokens of its category name in the caption.
    sample = dataset[0].sample
    texts = sample.phrase_texts()
    assert sorted(texts[p] for p in target["phrase_index"].tolist()) == ["hair drier", "traffic light"]
    for row, phrase in zip(target["positive_map"], target["phrase_index"].tolist()):
        tokens = batch.input_ids[0][row > 0]
        decoded = dataset_tokenizer_decode(tokens)
        assert decoded == texts[phrase]
    assert batch.targets[1]["boxes"].shape == (0, 4)
    assert batch.image_ids == [1, 2]


def dataset_tokenizer_decode(tokens: torch.Tensor) -> str:
    from glip.tokenizer import load_tokenizer

    return load_tokenizer().decode(tokens.tolist())


def test_empty_batch_is_refused():
    with pytest.raises(ValueError, match="empty"):
        GroundingCollator()([])
