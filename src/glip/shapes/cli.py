"""``glip shapes``: generate splits of the shapes world, report models on them, and pretrain the
texture skip (the step between stages 4 and 5 of glip-nano).

    glip shapes generate --out data/shapes --split det-train --num-images 10000 --seed 0 --workers 2
    glip shapes generate --out data/shapes --split web --num-images 10000 --seed 0 --workers 2 --shard-size 1000
    glip shapes generate --out data/shapes --split vqa --num-images 10000 --seed 0 --workers 2
    glip shapes pseudo-quality --labels runs/web-labels --truth data/shapes/web/truth/truth.jsonl
    glip shapes report --data data/shapes --model glip-nano=src/glip/weights/glip-nano.safetensors
    glip shapes texture-pretrain --weights runs/glip-nano-stage4/model.safetensors \
        --grounding data/shapes/attributes-train data/shapes/ground-train --steps 1000 \
        --out runs/glip-nano-stage4-textures.safetensors

Errors are one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
import sys
import time

from glip.shapes.generate import IMAGE_FORMATS, generate_split
from glip.shapes.vocabulary import FILLS, SPLITS

EXIT_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_ERROR)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="glip shapes", description="procedural shapes world for GLIP")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    generate = sub.add_parser("generate", help="draw one split: images, COCO JSON, grounding JSON Lines")
    generate.add_argument("--out", required=True, help="dataset root; the split is written to OUT/SPLIT")
    generate.add_argument("--split", required=True, choices=[*SPLITS, "web", "vqa", "captions"],
                          help="which split (web: image-caption pairs without boxes, truth kept apart; "
                               "vqa: questions and answers; captions: reference captions)")
    generate.add_argument("--num-images", type=int, required=True, help="number of images")
    generate.add_argument("--seed", type=int, required=True, help="dataset seed")
    generate.add_argument("--size", type=int, default=320, help="image side in pixels (default 320)")
    generate.add_argument("--workers", type=int, default=1, help="drawing processes (default 1)")
    generate.add_argument("--format", choices=IMAGE_FORMATS, help="image format (default png; jpg for web)")
    generate.add_argument("--shard-size", type=int, metavar="N",
                          help="web only: also write webdataset tar shards of N pairs (OUT/web/shards/)")
    generate.add_argument("--overwrite", action="store_true", help="replace an existing split directory")
    report = sub.add_parser("report", help="evaluate models on the test splits and print a Markdown table")
    report.add_argument("--data", required=True, help="dataset root holding the test splits")
    report.add_argument("--model", action="append", required=True, metavar="LABEL=WEIGHTS",
                        help="a model to evaluate (repeatable), e.g. glip-nano=runs/nano/model.safetensors")
    report.add_argument("--out", help="also write the table to this Markdown file (an earlier table is replaced)")
    report.add_argument("--overwrite", action="store_true", help="replace --out even if it is not an earlier table")
    report.add_argument("--plots", metavar="DIR",
                        help="write each model's det-test naming confusion matrix there (LABEL-naming.png/.json)")
    report.add_argument("--device", default="cpu")
    texture = sub.add_parser("texture-pretrain",
                             help="teach a checkpoint's texture skip the fill words of grounding phrases")
    texture.add_argument("--weights", required=True, help="a glip checkpoint whose head has a texture skip")
    texture.add_argument("--grounding", nargs="+", required=True,
                         help="folders holding grounding.jsonl (the phrases to learn from)")
    texture.add_argument("--out", required=True, help="where to write the checkpoint (.safetensors)")
    texture.add_argument("--val", help="a shapes split (scenes.jsonl) to measure accuracy on")
    texture.add_argument("--words", nargs="+", default=list(FILLS),
                         help=f"the words to tell apart (default: {' '.join(FILLS)})")
    texture.add_argument("--steps", type=int, default=800, help="optimizer steps of 8 pictures (default 800)")
    texture.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    texture.add_argument("--seed", type=int, default=0, help="sampling and initialisation seed (default 0)")
    quality = sub.add_parser("pseudo-quality",
                             help="precision and recall of pseudo labels against the web split's true boxes")
    quality.add_argument("--labels", nargs="+", required=True, metavar="DIR_OR_SHARD",
                         help="the --out folder of glip label, or its .jsonl label shards")
    quality.add_argument("--truth", required=True, help="truth.jsonl of the web split that was labelled")
    quality.add_argument("--iou", type=float, default=0.5, help="least IoU of a match (default 0.5)")
    quality.add_argument("--min-score", type=float, default=0.0,
                         help="ignore pseudo boxes scored below this (default 0: all the labeller kept)")
    quality.add_argument("--labelled-only", action="store_true",
                         help="count recall over the labelled pairs only, not every pair of the truth")
    quality.add_argument("--out", default="pseudo-quality.json",
                         help="JSON file to write (default pseudo-quality.json; an earlier result is replaced)")
    quality.add_argument("--overwrite", action="store_true", help="replace --out even if it is not an earlier result")
    return parser


def check_replaceable(path: str | Path, is_earlier_result: Callable[[str], bool], overwrite: bool) -> None:
    """Refuse to replace a user's file: only a missing file or an earlier result of the same command."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"--out {path} is a folder: give a file name")
    if path.exists() and not overwrite:
        try:
            earlier = is_earlier_result(path.read_text())
        except (UnicodeDecodeError, ValueError):
            earlier = False
        if not earlier:
            raise ValueError(f"--out {path} exists and is not an earlier result of this command: "
                             "choose another --out or pass --overwrite")


def _is_quality_json(text: str) -> bool:
    data = json.loads(text)
    return isinstance(data, dict) and {"iou_threshold", "kinds"} <= data.keys()


def run_pseudo_quality(args: argparse.Namespace) -> int:
    from glip.shapes.pseudo_quality import quality_table, read_label_records, read_truth, score_pseudo_labels

    check_replaceable(args.out, _is_quality_json, args.overwrite)
    quality = score_pseudo_labels(read_label_records(args.labels), read_truth(args.truth), iou_threshold=args.iou,
                                  min_score=args.min_score, labelled_only=args.labelled_only)
    Path(args.out).write_text(json.dumps(quality.to_dict(), indent=1) + "\n")
    unmatched = len(quality.unmatched_records)
    print(f"{quality.labelled_records} labelled pairs of {quality.truth_records} counted for recall"
          f"{f'; {unmatched} label records match no truth' if unmatched else ''}"
          f"; pseudo phrases: {quality.exact_spans} with the truth's span, {quality.partial_spans} with another")
    print(quality_table(quality))
    print(f"-> {args.out}")
    return 0


def run_texture_pretrain(args: argparse.Namespace) -> int:
    from glip.shapes.texture_pretrain import pretrain_checkpoint

    start = time.perf_counter()
    result = pretrain_checkpoint(args.weights, args.grounding, args.out, val=args.val, words=tuple(args.words),
                                 steps=args.steps, lr=args.lr, seed=args.seed, progress=True)
    print(f"{result.num_regions} regions in {result.num_images} pictures name one of {' '.join(args.words)}")
    if result.held_out_accuracy is not None:
        print(f"held-out accuracy ({args.val}): {result.held_out_accuracy:.3f}")
    print(f"{args.steps} steps in {time.perf_counter() - start:.1f} s -> {result.output}")
    return 0


def run_report(args: argparse.Namespace) -> int:
    from glip.shapes.report import evaluate_model, markdown_table

    if args.out:
        check_replaceable(args.out, lambda text: text.startswith("| split | metric |"), args.overwrite)
    results = {}
    for item in args.model:
        label, _, weights = item.partition("=")
        if not weights:
            raise ValueError(f"--model takes LABEL=WEIGHTS, got {item!r}")
        results[label] = evaluate_model(weights, args.data, args.device, plots=args.plots, label=label)
    table = markdown_table(results)
    if args.out:
        Path(args.out).write_text(table + "\n")
    print(table)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``glip shapes`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, or a one-line usage error
        return int(exit_.code or 0)
    if args.command in ("report", "texture-pretrain", "pseudo-quality"):
        run = {"report": run_report, "texture-pretrain": run_texture_pretrain,
               "pseudo-quality": run_pseudo_quality}[args.command]
        try:
            return run(args)
        except (ValueError, OSError, RuntimeError) as error:
            print(f"glip shapes: error: {error}", file=sys.stderr)
            return EXIT_ERROR
    start = time.perf_counter()
    try:
        split_dir = generate_split(args.out, args.split, args.num_images, args.seed, image_size=args.size,
                                   workers=args.workers, progress=True, overwrite=args.overwrite,
                                   image_format=args.format, shard_size=args.shard_size)
    except (ValueError, OSError) as error:  # FileExistsError is an OSError
        print(f"glip shapes: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    files = ", ".join(str(path.relative_to(split_dir)) for path in sorted(split_dir.glob("**/*.json*")))
    if args.shard_size:
        files += f", {len(list((split_dir / 'shards').glob('*.tar')))} shards of {args.shard_size} pairs in shards/"
    unit = "pairs" if args.split == "web" else "images"
    print(f"{args.split}: {args.num_images} {unit} in {time.perf_counter() - start:.1f} s -> {split_dir} ({files})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
