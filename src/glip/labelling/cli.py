"""``glip label``: box the noun phrases of image-text pairs with a teacher model (self-training data).

Usage::

    glip label shards/ --out labels/ [--weights W] [--min-score 0.5] [--min-boxes 1] [--nms 0.5]
               [--max-boxes-per-phrase K] [--engine local|ray] [--workers 2] [--ray-address ADDR]
               [--batch-size 8] [--overwrite] [--device cpu]

Inputs are webdataset/img2dataset ``.tar`` shards, ``.jsonl`` files of ``{"image", "caption"}`` or
``.parquet`` files (files, folders or glob patterns). Writes ``DIR/<shard>.jsonl`` (ODVG),
``DIR/manifest.json`` and ``DIR/errors.jsonl``; rerunning the same command resumes a killed run.
Errors are one line on stderr with exit code 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys

from glip.cli_args import device_name, fraction, positive_int
from glip.cli_errors import run_command
from glip.images import DEFAULT_MAX_MEGAPIXELS

ENGINES = ("local", "ray")


def build_parser(prog: str = "glip label") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Label image-text pairs with boxes for their noun phrases (a teacher for "
                               "self-training). Rerunning the same command resumes an interrupted run.")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help=".tar webdataset shards, .jsonl files of {\"image\", \"caption\"}, .parquet files, "
                             "folders of them or glob patterns")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder: one <shard>.jsonl per input "
                                                                    "shard, manifest.json, errors.jsonl")
    parser.add_argument("--weights", help="the teacher: our .safetensors, an official .pth or an official file "
                                          "name (default: the embedded model)")
    parser.add_argument("--min-score", type=lambda t: fraction(t, high_open=True), default=0.5,
                        help="keep boxes scoring strictly above this (default 0.5, as the official pipeline)")
    parser.add_argument("--min-boxes", type=int, default=1,
                        help="drop a pair with fewer boxes (default 1)")
    parser.add_argument("--nms", type=lambda t: fraction(t, low_open=True), default=None, metavar="IOU",
                        help="extra NMS among the boxes of one phrase at this IoU (default: none)")
    parser.add_argument("--max-boxes-per-phrase", type=positive_int, default=None, metavar="K",
                        help="keep at most K boxes per phrase, highest scores first (default: all)")
    parser.add_argument("--engine", choices=ENGINES, default="local",
                        help="local: worker processes on this machine (default); ray: an actor pool of teachers on "
                             "a Ray cluster (pip install \"glip[ray]\")")
    parser.add_argument("--workers", type=positive_int, default=1,
                        help="worker processes (local) or teacher actors (ray), each with its own model (default 1)")
    parser.add_argument("--ray-address", default=None, metavar="ADDR",
                        help="ray: join this cluster (e.g. auto, or ray://host:10001); default: start a local one")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="pairs per forward pass (default 8)")
    parser.add_argument("--image-column", default="jpg", help="parquet: column of image bytes (default jpg)")
    parser.add_argument("--path-column", default=None, help="parquet: column of image paths, instead of bytes")
    parser.add_argument("--caption-column", default="caption", help="parquet: caption column (default caption)")
    parser.add_argument("--key-column", default="key", help="parquet: key column when present (default key; "
                                                            "else the row number)")
    parser.add_argument("--max-megapixels", type=float, default=DEFAULT_MAX_MEGAPIXELS, metavar="MP",
                        help=f"largest image accepted (default {DEFAULT_MAX_MEGAPIXELS}); larger ones are errors")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the output of another run in --out (default: refuse; the same job resumes)")
    parser.add_argument("--device", type=device_name, default=None,
                        help="cpu, cuda, cuda:N or mps (default: cuda when available)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    return parser


def _check_engine(engine: str) -> None:
    if engine == "ray" and importlib.util.find_spec("ray") is None:
        raise ValueError('--engine ray needs Ray: pip install "glip[ray]" (or use --engine local)')


def run(args: argparse.Namespace) -> int:
    if args.min_boxes < 0:
        raise ValueError(f"--min-boxes must be at least 0, got {args.min_boxes}")
    _check_engine(args.engine)
    from glip.labelling.sources import ParquetColumns, list_shards

    list_shards(args.inputs)  # a missing input answers before the model loads
    from tqdm.auto import tqdm

    from glip.labelling.job import LabelSettings, run_job

    settings = LabelSettings(
        weights=args.weights, min_score=args.min_score, min_boxes=args.min_boxes, nms=args.nms,
        max_boxes_per_phrase=args.max_boxes_per_phrase, batch_size=args.batch_size,
        max_megapixels=args.max_megapixels,
        columns=ParquetColumns(args.image_column, args.path_column, args.caption_column, args.key_column))
    bars: list = []  # the bar starts with the first labelled batch: a load error stays one line
    totals = {"boxes": 0}

    def progress(pairs: int, boxes: int) -> None:
        if not bars:
            bars.append(tqdm(desc="label", unit="pair", disable=args.no_progress, dynamic_ncols=True))
        bar = bars[0]
        totals["boxes"] += boxes
        bar.update(pairs)
        rate = bar.format_dict.get("rate")  # pairs/s, as the bar shows it
        boxes_per_pair = totals["boxes"] / max(bar.n, 1)
        bar.set_postfix(boxes=totals["boxes"], boxes_per_s="?" if not rate else f"{rate * boxes_per_pair:.1f}",
                        refresh=False)

    try:
        manifest = run_job(args.inputs, args.out, settings, workers=args.workers, overwrite=args.overwrite,
                           device=args.device, engine=args.engine, progress=progress, ray_address=args.ray_address)
    finally:
        for bar in bars:
            bar.close()
    t = manifest["totals"]
    print(f"{t['pairs']} pairs in {len(manifest['shards'])} shards: {t['kept']} kept ({t['boxes']} boxes), "
          f"{t['dropped']} dropped (< {settings.min_boxes} boxes), {t['errors']} errors -> {args.out}/ "
          f"(manifest.json, errors.jsonl)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    return run_command(lambda: run(args), args.debug)


if __name__ == "__main__":
    sys.exit(main())
