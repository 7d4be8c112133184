"""Builders of hand-made COCO ground truth and predictions for the evaluation tests."""

from __future__ import annotations


def coco(images: list[int], annotations: list[tuple], categories: list[tuple] | None = None, size=(100, 100)) -> dict:
    """A COCO dict: ``annotations`` are ``(image_id, category_id, [x, y, w, h])`` (ids from 1)."""
    categories = categories or [(1, "cat"), (2, "dog"), (3, "bird")]
    return {
        "images": [{"id": i, "file_name": f"{i}.png", "width": size[0], "height": size[1]} for i in images],
        "annotations": [{"id": n + 1, "image_id": i, "category_id": c, "bbox": list(box), "area": box[2] * box[3],
                         "iscrowd": 0} for n, (i, c, box) in enumerate(annotations)],
        "categories": [{"id": c, "name": name} for c, name in categories],
    }


def det(image_id, category_id, box, score) -> dict:
    return {"image_id": image_id, "category_id": category_id, "bbox": list(box), "score": score}


def pycocotools_stats(ground_truth: dict, predictions: list[dict]):
    """``COCOeval.stats`` of pycocotools run directly, the way its README shows."""
    import contextlib
    import copy
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(ground_truth)
        gt.createIndex()
        evaluator = COCOeval(gt, gt.loadRes(copy.deepcopy(predictions)), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats
