from __future__ import annotations

import json

import pytest

from glip.transfer.fewshot import FewShotError, images_per_category, sample_few_shot


def _coco() -> dict:
    """20 images; image i holds category 1 + i % 3 and, every 4th image, also category 4."""
    images = [{"id": i, "file_name": f"{i}.png", "width": 10, "height": 10} for i in range(1, 21)]
    annotations = []
    for i in range(1, 21):
        annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": 1 + i % 3, "bbox": [0, 0, 5, 5]})
        if i % 4 == 0:
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": 4, "bbox": [5, 5, 4, 4]})
    categories = [{"id": c, "name": f"c{c}"} for c in (1, 2, 3, 4)]
    return {"images": images, "annotations": annotations, "categories": categories}


@pytest.mark.parametrize("shots", [1, 3, 5])
def test_k_images_chosen_for_each_category(shots):
    coco = _coco()
    subset = sample_few_shot(coco, shots, seed=0)
    kept = {image["id"] for image in subset["images"]}
    assert len(kept) == shots * len(coco["categories"])  # K per category, none shared
    for category, images in images_per_category(subset).items():
        assert len(images) >= shots, category
    # every annotation of a chosen image is kept (no object turned into background)
    assert subset["annotations"] == [a for a in coco["annotations"] if a["image_id"] in kept]


def test_deterministic_by_seed():
    coco = _coco()
    first = sample_few_shot(coco, 3, seed=7)
    assert json.dumps(first) == json.dumps(sample_few_shot(coco, 3, seed=7))
    others = {tuple(i["id"] for i in sample_few_shot(coco, 3, seed=s)["images"]) for s in range(5)}
    assert len(others) > 1  # the seed matters


def test_too_many_shots_names_the_category():
    with pytest.raises(FewShotError, match=r"'c4' has \d+ training images .* fewer than shots=6"):
        sample_few_shot(_coco(), 6, seed=0)
    with pytest.raises(FewShotError, match="shots must be >= 1"):
        sample_few_shot(_coco(), 0, seed=0)
