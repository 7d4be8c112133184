#!/usr/bin/env python
"""Rebuild tests/golden from the full official reference data, keeping only what the tests read.

    python tests/golden/extract.py SOURCE [--out tests/golden]

SOURCE is the folder the official harness wrote (glip_t/, glip_t_a/, glip_l/, each with its own
README). Every array kept is copied bit for bit (``np.savez_compressed`` is lossless) and checked
against its source after writing; the images, meta.json and loss.json are copied unchanged. What is
dropped (per-tensor mean/std/absmax, the unused 80-class logits, the full token logits of the real
tokens, the official detection order, the older GLIP-L key list in glip_t/) is read by no test and
by no part of tools/check_reference.py.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

MODELS = ("glip_t", "glip_t_a", "glip_l")
LEVELS = ("P3", "P4", "P5", "P6", "P7")
SAMPLED = ("__shape", "__idx", "__val")  # a sampled tensor: full shape, flat indices, values there


def inference_keys(names: set[str]) -> list[str]:
    """The arrays of inference.npz that tools/check_reference.py and the tests compare."""
    keys = ["image_tensor" + suffix for suffix in SAMPLED] + ["image_tensor__mean"]  # mean: test_images
    keys += ["input_ids", "attention_mask", "positive_map", "lang_hidden", "lang_embedded"]
    if "lang_hidden_after_fusion" in names:  # absent for GLIP-T(A): no fused text
        keys.append("lang_hidden_after_fusion")
    sampled = [f"swin_stage{i}" for i in range(2, 6)]
    for level in LEVELS:
        sampled += [f"fpn_{level}", f"head_tower_visual_{level}", f"head_dot_product_logits_{level}"]
        keys += [f"head_bbox_reg_{level}", f"head_centerness_{level}"]  # stored in full
        keys += [f"anchors_{level}__{part}" for part in ("shape", "first8", "rows_idx", "rows")]
    keys += [name + suffix for name in sampled for suffix in SAMPLED]
    keys += ["det_boxes_xyxy", "det_scores", "det_labels"]
    return keys


LOSS_KEYS = ["input_ids", "attention_mask", "positive_map", "gt_boxes_xyxy", "atss_cls_labels"]
MANIFEST_FIELDS = ("model", "entry_format", "entries")  # glip.reference reads "entries" only


def copy_arrays(source: Path, target: Path, keys: list[str] | None = None,
                drop_prefix: str | None = None) -> None:
    """Write the chosen arrays of ``source`` compressed to ``target`` and check them bit for bit."""
    arrays = np.load(source)
    if keys is None:
        keys = [k for k in arrays.files if not (drop_prefix and k.startswith(drop_prefix))]
    missing = sorted(set(keys) - set(arrays.files))
    if missing:
        raise SystemExit(f"error: {source} lacks {', '.join(missing)}")
    np.savez_compressed(target, **{key: arrays[key] for key in keys})
    written = np.load(target)
    for key in keys:
        a, b = arrays[key], written[key]
        if a.dtype != b.dtype or a.shape != b.shape or a.tobytes() != b.tobytes():
            raise SystemExit(f"error: {target}:{key} differs from its source after writing")


def copy_manifest(source: Path, target: Path) -> None:
    manifest = json.loads(source.read_text())
    kept = {field: manifest[field] for field in MANIFEST_FIELDS}
    entries = ",\n".join("  " + json.dumps(entry) for entry in kept.pop("entries"))
    head = json.dumps(kept)[:-1]
    target.write_text(f'{head}, "entries": [\n{entries}\n]}}\n')
    if json.loads(target.read_text())["entries"] != manifest["entries"]:
        raise SystemExit(f"error: {target} entries differ from {source}")


def extract(source: Path, out: Path) -> None:
    for model in MODELS:
        folder, case = source / model, source / model / "case_a"
        (out / model / "case_a").mkdir(parents=True, exist_ok=True)
        copy_manifest(folder / f"manifest_{model}.json", out / model / f"manifest_{model}.json")
        # The BERT token_type_ids buffer is all zeros and read by nothing; position_ids is loaded.
        copy_arrays(folder / "nonfloat_buffers.npz", out / model / "nonfloat_buffers.npz",
                    drop_prefix="nonpersistent::language_backbone.body.model.embeddings.token_type_ids")
        names = set(np.load(case / "inference.npz").files)
        copy_arrays(case / "inference.npz", out / model / "case_a" / "inference.npz", inference_keys(names))
        for name in ("image.png", "meta.json", "loss.json"):
            if (case / name).is_file():
                shutil.copyfile(case / name, out / model / "case_a" / name)
        if (case / "loss_inputs.npz").is_file():
            copy_arrays(case / "loss_inputs.npz", out / model / "case_a" / "loss_inputs.npz", LOSS_KEYS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="the full reference folder (glip_t/, glip_t_a/, glip_l/)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                        help="where to write (default: this folder)")
    args = parser.parse_args(argv)
    if not all((args.source / model / "case_a" / "inference.npz").is_file() for model in MODELS):
        print(f"error: {args.source} is not a reference folder (needs {', '.join(MODELS)} with case_a/)",
              file=sys.stderr)
        return 2
    extract(args.source, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
