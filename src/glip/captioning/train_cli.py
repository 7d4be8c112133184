"""``glip caption-train CONFIG.yaml [key=value ...] [--resume] [--debug]``: train a caption head."""

from __future__ import annotations

import argparse
import sys

from glip.cli_errors import run_command
from glip.training.train_cli import _configure_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glip caption-train", description="Train a model's caption head on caption data (one process).",
        epilog="example: glip caption-train configs/caption-shapes.yaml train.max_steps=500 output.dir=runs/cap")
    parser.add_argument("config", help="caption training config (YAML, see configs/caption-shapes.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="change a setting, e.g. optim.lr=1e-4 (values are YAML)")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in output.dir")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.debug)

    def command() -> int:
        from glip.captioning.train_config import load_caption_train_config
        from glip.captioning.trainer import train_captions

        path = train_captions(load_caption_train_config(args.config, args.overrides),
                              resume=True if args.resume else None)
        print(f"trained model (with its caption head): {path}")
        return 0

    return run_command(command, args.debug, "interrupted (resume with --resume from the last checkpoint)")


if __name__ == "__main__":
    sys.exit(main())
