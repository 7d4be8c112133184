"""Few-shot subsets of a COCO-format dataset: K images per category, drawn with a seed.

The paper's protocol (1, 3, 5, 10 shots): every category gets K training images that contain it.
Categories are served rarest first, each drawing K images it appears in from those not yet taken
(a seeded shuffle), so a common category never uses up the few images of a rare one. A chosen image
keeps *all* its annotations: its other objects are labelled too, never taught as background.

Example:
    >>> subset = sample_few_shot(coco_dict, shots=5, seed=0)  # doctest: +SKIP
    >>> len(subset["images"]) <= 5 * len(coco_dict["categories"])  # doctest: +SKIP
    True
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any


class FewShotError(ValueError):
    """K is not possible on this dataset (too few images of a category, or K < 1)."""


def images_per_category(coco: dict[str, Any]) -> dict[Any, list[Any]]:
    """Category id -> the ids of the images holding at least one (non-crowd) box of it, sorted."""
    found: dict[Any, set] = defaultdict(set)
    for annotation in coco.get("annotations", []):
        if not annotation.get("iscrowd", 0):
            found[annotation["category_id"]].add(annotation["image_id"])
    return {c["id"]: sorted(found.get(c["id"], set()), key=str) for c in coco["categories"]}


def sample_few_shot(coco: dict[str, Any], shots: int, seed: int) -> dict[str, Any]:
    """A copy of ``coco`` restricted to K images per category (see the module docstring).

    Raises:
        FewShotError: ``shots < 1``, or a category has fewer than ``shots`` images left for it.
    """
    if shots < 1:
        raise FewShotError(f"shots must be >= 1, got {shots}")
    available = images_per_category(coco)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    rng = random.Random(seed)
    chosen: list[Any] = []
    taken: set = set()
    for category in sorted(available, key=lambda c: (len(available[c]), str(c))):
        candidates = [image for image in available[category] if image not in taken]
        if len(candidates) < shots:
            raise FewShotError(
                f"category {names[category]!r} has {len(candidates)} training images left for it "
                f"({len(available[category])} in all), fewer than shots={shots}: lower --shots or add images")
        rng.shuffle(candidates)
        for image in candidates[:shots]:
            taken.add(image)
            chosen.append(image)
    keep = set(chosen)
    return {
        **{key: value for key, value in coco.items() if key not in ("images", "annotations")},
        "images": [image for image in coco["images"] if image["id"] in keep],
        "annotations": [a for a in coco.get("annotations", []) if a["image_id"] in keep],
    }
