"""``glip shapes``: generate splits of the shapes world.

    glip shapes generate --out data/shapes --split det-train --num-images 10000 --seed 0 --workers 2

Errors are one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import sys
import time

from glip.shapes.generate import IMAGE_FORMATS, generate_split
from glip.shapes.vocabulary import SPLITS

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
    generate.add_argument("--split", required=True, choices=list(SPLITS), help="which split")
    generate.add_argument("--num-images", type=int, required=True, help="number of images")
    generate.add_argument("--seed", type=int, required=True, help="dataset seed")
    generate.add_argument("--size", type=int, default=320, help="image side in pixels (default 320)")
    generate.add_argument("--workers", type=int, default=1, help="drawing processes (default 1)")
    generate.add_argument("--format", choices=IMAGE_FORMATS, default="png", help="image format (default png)")
    generate.add_argument("--overwrite", action="store_true", help="replace an existing split directory")
    report = sub.add_parser("report", help="evaluate models on the test splits and print a Markdown table")
    report.add_argument("--data", required=True, help="dataset root holding the test splits")
    report.add_argument("--model", action="append", required=True, metavar="LABEL=WEIGHTS",
                        help="a model to evaluate (repeatable), e.g. glip-nano=runs/nano/model.safetensors")
    report.add_argument("--out", help="also write the table to this Markdown file")
    report.add_argument("--device", default="cpu")
    return parser


def run_report(args: argparse.Namespace) -> int:
    from glip.shapes.report import evaluate_model, markdown_table

    results = {}
    for item in args.model:
        label, _, weights = item.partition("=")
        if not weights:
            raise ValueError(f"--model takes LABEL=WEIGHTS, got {item!r}")
        results[label] = evaluate_model(weights, args.data, args.device)
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
    if args.command == "report":
        try:
            return run_report(args)
        except (ValueError, OSError, RuntimeError) as error:
            print(f"glip shapes: error: {error}", file=sys.stderr)
            return EXIT_ERROR
    start = time.perf_counter()
    try:
        split_dir = generate_split(args.out, args.split, args.num_images, args.seed, image_size=args.size,
                                   workers=args.workers, progress=True, overwrite=args.overwrite,
                                   image_format=args.format)
    except (ValueError, OSError) as error:  # FileExistsError is an OSError
        print(f"glip shapes: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    files = ", ".join(path.name for path in sorted(split_dir.glob("*.json*")))
    print(f"{args.split}: {args.num_images} images in {time.perf_counter() - start:.1f} s -> {split_dir} ({files})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
