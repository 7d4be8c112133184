"""``glip vqa-train CONFIG.yaml [key=value ...] [--resume] [--debug]``: fine-tune a VQA answer head.

Trains as `glip.training.vqa_config.VqaTrainConfig` says through `glip.training.trainer.train` with
``trainer_class=VqaTrainer`` (one process), writes ``OUTPUT/model.safetensors`` with its head
``OUTPUT/model.vqa.safetensors`` (and ``.json``), then, when the config has ``data.val`` sources,
prints their VQA accuracy (overall, per answer and question type) and writes it to
``OUTPUT/vqa_metrics.json``. Errors are one line on stderr and exit code 2; Ctrl-C exits 130 (the
last checkpoint stays; ``--resume`` continues from it).
"""

from __future__ import annotations

import argparse
import json
import sys

from glip.cli_errors import run_command
from glip.training.train_cli import _configure_logging


def build_parser(prog: str = "glip vqa-train") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Fine-tune GLIP with a VQA answer head on VQA2.0 JSON or JSON Lines questions.",
        epilog="example: glip vqa-train configs/vqa-shapes.yaml train.max_steps=500 output.dir=runs/vqa")
    parser.add_argument("config", help="VQA training config (YAML)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="change a setting, e.g. optim.lr=1e-3 train.freeze=[backbone] (values are YAML)")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in output.dir")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    return parser


def run(args: argparse.Namespace) -> int:
    from glip.training.trainer import train
    from glip.training.vqa_config import load_vqa_train_config
    from glip.training.vqa_trainer import VqaTrainer, read_sources

    config = load_vqa_train_config(args.config, args.overrides)
    validation = read_sources(config.data.val)  # read first: a bad file stops the run before training
    path = train(config, resume=True if args.resume else None, trainer_class=VqaTrainer)
    print(f"trained model: {path} (VQA head beside it)")
    if validation:
        from glip.evaluation.vqa_cli import accuracy_lines
        from glip.evaluation.vqa_eval import predict_answers
        from glip.evaluation.vqa_metrics import vqa_accuracy
        from glip.predictor import GLIPPredictor

        predictor = GLIPPredictor.from_pretrained(path, device=config.train.device)
        accuracy = vqa_accuracy(validation, predict_answers(predictor, validation, progress=config.output.progress))
        metrics = path.parent / "vqa_metrics.json"
        metrics.write_text(json.dumps(accuracy.to_dict(), indent=2) + "\n")
        for line in accuracy_lines(accuracy):
            print(line)
        print(f"wrote {metrics}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.debug)
    return run_command(lambda: run(args), args.debug, "interrupted (resume with --resume from the last checkpoint)")


if __name__ == "__main__":
    sys.exit(main())
