"""``glip finetune --train DATA --val DATA --mode prompt|linear|full [--shots K --seed S] ...``.

Errors are one line on stderr and exit code 2 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from glip.cli_errors import run_command
from glip.transfer.finetune_config import DEFAULT_LR, DEFAULT_STEPS, FinetuneConfig



def build_parser(prog: str = "glip finetune") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Tune a base model to a detection task (COCO-format) and evaluate it.",
        epilog="example: glip finetune --train task/train.json --val task/val.json --mode prompt --shots 5 "
               "--out runs/task-prompt-5")
    parser.add_argument("--train", required=True, help="COCO detection JSON of the training images")
    parser.add_argument("--val", help="COCO detection JSON to evaluate on (same categories)")
    parser.add_argument("--weights", help="base model: our .safetensors or an official .pth (default: embedded)")
    parser.add_argument("--mode", choices=["prompt", "linear", "full"], default="prompt",
                        help="prompt: learn only the prompt embedding (adapter); linear: only the box, centerness "
                             "and alignment layers (adapter); full: everything (a new model)")
    parser.add_argument("--shots", type=int, help="K training images per category, drawn with --seed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prompt-override", dest="prompt_overrides", metavar="YAML",
                        help="category -> descriptive prompt, e.g. 'ellipse: an oval ellipse'")
    parser.add_argument("--train-images", help="image folder of --train (default: its folder)")
    parser.add_argument("--val-images", help="image folder of --val (default: its folder)")
    parser.add_argument("--out", default="runs/finetune", help="output folder (default runs/finetune)")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"optimizer steps (default {DEFAULT_STEPS})")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, help="learning rate (default: " + ", ".join(
        f"{mode} {lr:g}" for mode, lr in DEFAULT_LR.items()) + ")")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("glip").setLevel(logging.DEBUG if args.debug else logging.INFO)
    def command() -> int:
        from glip.transfer.finetune import finetune

        options = {k: v for k, v in vars(args).items() if k not in ("debug", "no_progress")}
        result = finetune(FinetuneConfig(**options, progress=not args.no_progress))
        print(json.dumps(result, indent=2))
        return 0

    return run_command(command, args.debug, "interrupted (continue with --resume)")


if __name__ == "__main__":
    sys.exit(main())
