"""``glip train CONFIG.yaml [key=value ...] [--resume] [--debug]``, also ``python -m glip.training.train_cli``.

Several processes: ``torchrun --nproc_per_node N -m glip.training.train_cli CONFIG.yaml``.
Errors are one line on stderr and exit code 2 (``--debug`` shows the traceback); Ctrl-C exits 130
(the last checkpoint stays; ``--resume`` continues from it).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from glip.cli_errors import run_command



def build_parser(prog: str = "glip train") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Train or fine-tune a GLIP model.",
        epilog="example: glip train tiny.yaml optim.lr=1e-3 train.max_steps=500 output.dir=runs/tiny")
    parser.add_argument("config", help="training config (YAML)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="change a setting, e.g. optim.lr=1e-3 train.ema_decay=null (values are YAML)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the latest checkpoint in output.dir")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    return parser


def _configure_logging(debug: bool) -> None:
    """INFO from the main process (WARNING from the others), DEBUG with --debug."""
    main_process = os.environ.get("RANK", "0") == "0"
    level = logging.DEBUG if debug else (logging.INFO if main_process else logging.WARNING)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("glip").setLevel(level)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.debug)

    def command() -> int:
        from glip.training.train_config import load_train_config
        from glip.training.trainer import train

        config = load_train_config(args.config, args.overrides)
        path = train(config, resume=True if args.resume else None)
        if os.environ.get("RANK", "0") == "0":
            print(f"trained model: {path}")
        return 0

    return run_command(command, args.debug, "interrupted (resume with --resume from the last checkpoint)")


if __name__ == "__main__":
    sys.exit(main())
