"""``glip caption IMAGE... [--beam N] [--grounded] [--out DIR]``: describe pictures.

Prints each caption and writes ``OUT/NAME.json`` per image, NAME being the picture's stem:
``{image, width, height, caption, phrases, truncated}``; with ``--grounded``, ``phrases`` holds each
noun phrase of the caption with its span, its best box and score from the same model. A result
never replaces an input picture or a file that is not an earlier caption result (then it is an
error, unless ``--overwrite``); pictures sharing a stem get NAME, NAME-2, ...
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from glip.cli_args import device_name, positive_int, probability
from glip.cli_errors import run_command
from glip.images import DEFAULT_MAX_MEGAPIXELS, load_image

CAPTION_FIELDS = frozenset({"image", "width", "height", "caption", "phrases", "truncated"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glip caption", description="Describe pictures with a model's caption head.",
                                     epilog="example: glip caption scene.png --beam 3 --grounded "
                                            "--weights runs/caption/model.safetensors")
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--weights", help="a model with a caption head (default: the embedded model, which has none)")
    parser.add_argument("--beam", type=positive_int, default=1, help="beam width (default 1: greedy search)")
    parser.add_argument("--max-tokens", type=positive_int, default=None,
                        help="length limit in word pieces (default and most: the model's caption.max_tokens); "
                             "a caption that reaches it is cut off and marked truncated")
    parser.add_argument("--grounded", action="store_true",
                        help="box each noun phrase of the caption with the same model (needs spaCy)")
    parser.add_argument("--threshold", type=probability, default=0.0,
                        help="--grounded: lowest score of a phrase's box (default 0: its best box)")
    parser.add_argument("--out", default="glip_out", help="output folder (default glip_out): NAME.json per image")
    parser.add_argument("--overwrite", action="store_true", help="replace files in --out that are not caption results")
    parser.add_argument("--device", type=device_name, default=None, help="cpu, cuda, cuda:N or mps")
    parser.add_argument("--batch-size", type=positive_int, default=1, help="images per forward pass (default 1)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    return parser


def _is_caption_result(path: Path) -> bool:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(record, dict) and set(record) == CAPTION_FIELDS


def plan_caption_outputs(images: list[str], out: Path, overwrite: bool) -> list[Path]:
    """``OUT/NAME.json`` per image (see the module docstring); raises before any work is done."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: is a file, not a folder; give a folder for the results")
    inputs = {Path(image).resolve() for image in images}
    taken: set[str] = set()
    paths = []
    for image in images:
        stem = name = Path(image).stem
        number = 1
        while name.casefold() in taken:
            number += 1
            name = f"{stem}-{number}"
        taken.add(name.casefold())
        path = out / f"{name}.json"
        if path.exists():
            if path.resolve() in inputs:
                raise ValueError(f"{path} is an input: choose another --out")
            if not overwrite and not _is_caption_result(path):
                raise FileExistsError(f"{path} exists and is not an earlier caption result: pass --overwrite to "
                                      "replace it, or choose another --out")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    return run_command(lambda: run_caption(args), args.debug)


def run_caption(args: argparse.Namespace) -> int:
    max_pixels = int(DEFAULT_MAX_MEGAPIXELS * 1_000_000)
    for image in args.images:
        load_image(image, max_pixels=max_pixels)  # fail fast, with the file's name, before loading the model
    out = Path(args.out)
    paths = plan_caption_outputs(args.images, out, args.overwrite)
    from glip.predictor import GLIPPredictor

    predictor = GLIPPredictor.from_pretrained(args.weights, device=args.device)
    results = predictor.caption(args.images, beam=args.beam, grounded=args.grounded, max_tokens=args.max_tokens,
                                threshold=args.threshold, batch_size=args.batch_size, progress=len(args.images) > 1)
    out.mkdir(parents=True, exist_ok=True)
    for image, result, path in zip(args.images, results, paths):
        path.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        mark = " [truncated: reached the length limit]" if result.truncated else ""
        print(f"{image}: {result.caption}{mark} -> {path}")
        for phrase in result.phrases:
            box = ", ".join(f"{v:.1f}" for v in phrase.bbox_xyxy) if phrase.bbox_xyxy else "no box"
            score = f"{phrase.score:.3f}" if phrase.score is not None else "-"
            print(f"  {phrase.phrase[:32]:<32} {score:>6}  ({box})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
