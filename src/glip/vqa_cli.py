"""``glip vqa IMAGE... --question TEXT [--question TEXT ...]``: ask every question of every image.

Prints a short table per image and writes one JSON per image to ``--out`` (default ``glip_vqa``)::

    {"image": "scene.png", "width": 320, "height": 320,
     "qa": [{"question": "how many stars are there?", "answers": [{"answer": "2", "score": 0.91}, ...]}]}

answers best first (``--top-k``, default 5). The model needs a VQA answer head (`glip vqa-train`):
the head written beside ``--weights`` (``X.vqa.safetensors``) is loaded with it, or give one with
``--vqa-head``. ``NAME.json`` (NAME the picture's stem, ``NAME-2`` for a repeated stem) replaces an
earlier result of ``glip vqa``, never another file unless ``--overwrite``. Errors are one line and
exit code 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from glip.cli_args import device_name, positive_float, positive_int
from glip.cli_errors import run_command
from glip.images import DEFAULT_MAX_MEGAPIXELS, load_image

RESULT_FIELDS = frozenset({"image", "width", "height", "qa"})  # how a later run knows a JSON is ours
TABLE_ANSWERS = 3  # answers shown per question in the printed table


def build_parser(prog: str = "glip vqa") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Visual question answering: ask every question of every image.",
        epilog='example: glip vqa scene.png --question "how many stars are there?" --question "what colour is the '
               'square?" --weights runs/vqa/model.safetensors')
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--question", action="append", required=True, metavar="TEXT",
                        help="a question in everyday English (repeatable)")
    parser.add_argument("--weights", help="a model with a VQA head beside it (X.safetensors + X.vqa.safetensors, "
                                          "as glip vqa-train writes); default: the embedded model")
    parser.add_argument("--vqa-head", metavar="FILE", help="the answer head (*.vqa.safetensors with its .json) to use")
    parser.add_argument("--top-k", type=positive_int, default=5, metavar="K", help="answers per question (default 5)")
    parser.add_argument("--out", default="glip_vqa", help="output folder (default glip_vqa): NAME.json per image")
    parser.add_argument("--overwrite", action="store_true", help="replace files in --out that are not glip vqa results")
    parser.add_argument("--device", type=device_name, default=None,
                        help="cpu, cuda, cuda:N or mps (default: cuda when available)")
    parser.add_argument("--batch-size", type=positive_int, default=1, help="images per forward pass (default 1)")
    parser.add_argument("--max-megapixels", type=positive_float, default=DEFAULT_MAX_MEGAPIXELS, metavar="MP",
                        help=f"largest picture accepted, read from its header (default {DEFAULT_MAX_MEGAPIXELS})")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    return parser


def plan_answer_files(images: list[str], out: Path, overwrite: bool) -> list[Path]:
    """``out/NAME.json`` per image (see the module docstring); refuses to replace a foreign file."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: is a file, not a folder; give a folder for the results")
    paths: list[Path] = []
    taken: set[str] = set()
    for image in images:
        stem, number = Path(image).stem, 1
        while (name := stem if number == 1 else f"{stem}-{number}").casefold() in taken:
            number += 1
        taken.add(name.casefold())
        path = out / f"{name}.json"
        if path.exists() and not overwrite and not _is_result(path):
            raise FileExistsError(f"{path} exists and is not a glip vqa result: pass --overwrite to replace it, "
                                  "or choose another --out")
        paths.append(path)
    return paths


def _is_result(path: Path) -> bool:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(record, dict) and RESULT_FIELDS <= set(record)


def run_vqa(args: argparse.Namespace) -> int:
    for index, question in enumerate(args.question):
        if not question.strip():
            raise ValueError(f"--question {index + 1} is empty: ask something, e.g. --question \"how many stars are "
                             "there?\"")
    max_pixels = int(args.max_megapixels * 1_000_000)
    for image in args.images:
        load_image(image, max_pixels=max_pixels)  # fail fast, naming the file, before the model loads
    out = Path(args.out)
    paths = plan_answer_files(args.images, out, args.overwrite)
    from glip.answering import check_questions
    from glip.predictor import GLIPPredictor
    from glip.vqa_head_files import NO_VQA_HEAD

    predictor = GLIPPredictor.from_pretrained(args.weights, device=args.device)
    check_questions(args.question, predictor.tokenizer, predictor.max_length)
    if args.vqa_head is not None:
        predictor.load_vqa_head(args.vqa_head)
    if predictor.answerer is None:
        raise ValueError(NO_VQA_HEAD)
    results = predictor.answer(args.images, args.question, top_k=args.top_k, batch_size=args.batch_size)
    out.mkdir(parents=True, exist_ok=True)
    for path, result in zip(paths, results):
        path.write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
        print(f"{result.image} ({result.width}x{result.height}) -> {path}")
        print(f"  {'question':<40} {'answer':<16} {'score':>6}  next")
        for qa in result.qa:
            best, rest = qa.answers[0], qa.answers[1:TABLE_ANSWERS]
            others = ", ".join(f"{a.answer} {a.score:.2f}" for a in rest)
            print(f"  {qa.question[:40]:<40} {best.answer[:16]:<16} {best.score:6.3f}  {others}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    return run_command(lambda: run_vqa(args), args.debug)


if __name__ == "__main__":
    sys.exit(main())
