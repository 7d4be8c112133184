"""``glip caption-eval WEIGHTS CAPTIONS [--images DIR] [--beam N] [--out FILE]``: BLEU-4 and CIDEr."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from glip.cli_args import device_name, positive_int
from glip.cli_errors import run_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glip caption-eval", description="Caption every image of a caption file and score the captions "
                                              "against its references (BLEU-4, CIDEr-D).",
        epilog="example: glip caption-eval runs/caption/model.safetensors data/shapes/captions/captions.jsonl")
    parser.add_argument("weights", help="a model with a caption head (.safetensors, from glip caption-train)")
    parser.add_argument("captions", help="reference captions: JSON Lines {image, captions} or COCO captions JSON")
    parser.add_argument("--images", default=None, help="COCO captions JSON: the image folder (default: its folder)")
    parser.add_argument("--beam", type=positive_int, default=1, help="beam width (default 1: greedy)")
    parser.add_argument("--max-images", type=positive_int, default=None, help="score only the first N images")
    parser.add_argument("--batch-size", type=positive_int, default=1, help="images per forward pass")
    parser.add_argument("--out", default=None, help="also write the captions as a COCO results JSON here")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.add_argument("--device", type=device_name, default=None, help="cpu, cuda, cuda:N or mps")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")

    def command() -> int:
        out = Path(args.out) if args.out else None
        if out is not None and out.exists() and not args.overwrite:
            raise FileExistsError(f"{out} already exists: pass --overwrite to replace it, or choose another --out")
        from glip.captioning.data import read_caption_sources
        from glip.captioning.evaluate import evaluate_caption_model
        from glip.predictor import GLIPPredictor

        records = read_caption_sources([(args.captions, args.images)])
        records = records[:args.max_images] if args.max_images else records
        predictor = GLIPPredictor.from_pretrained(args.weights, device=args.device)
        report = evaluate_caption_model(predictor, records, beam=args.beam, batch_size=args.batch_size,
                                        progress=len(records) > 1)
        if out is not None:
            out.write_text(json.dumps(report.predictions(), indent=1) + "\n")
        print(f"{len(records)} images, beam {args.beam}: BLEU-4 {report.scores.bleu4:.4f}  "
              f"CIDEr {report.scores.cider:.4f}  ({report.truncated} captions reached the length limit)")
        return 0

    return run_command(command, args.debug)


if __name__ == "__main__":
    sys.exit(main())
