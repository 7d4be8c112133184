"""``glip vqa-eval``: VQA accuracy of a model (or of a results file) on VQA2.0 JSON or JSON Lines questions.

Usage::

    glip vqa-eval --weights runs/vqa/model.safetensors --questions questions.json --annotations annotations.json
    glip vqa-eval --weights runs/vqa/model.safetensors --questions vqa.jsonl
    glip vqa-eval --questions questions.json --annotations annotations.json --predictions results.json  # no model

Prints the accuracy overall, per question type and per answer type (the official VQA2.0 accuracy,
`glip.evaluation.vqa_metrics`) and writes ``vqa_metrics.json`` and (after a model run) the answers
in the official results format, ``vqa_results.json``, to ``--out`` (default ``glip_vqa_eval``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from glip.cli_args import device_name, positive_int
from glip.cli_errors import run_command


def build_parser(prog: str = "glip vqa-eval") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="VQA accuracy overall and per question type.")
    parser.add_argument("--questions", required=True,
                        help="VQA2.0 questions file or a .jsonl of {image, question, answers}")
    parser.add_argument("--annotations", help="VQA2.0 annotations file (JSON form)")
    parser.add_argument("--images", help="image folder (default: the questions file's folder)")
    parser.add_argument("--image-pattern", help="VQA2.0 files without an 'images' list: the file name of an image, "
                                                "e.g. COCO_val2014_{image_id:012d}.jpg")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--weights", help="a model with its VQA head beside it (default: the embedded model)")
    source.add_argument("--predictions", metavar="FILE", help="score this results file [{question_id, answer}] instead")
    parser.add_argument("--vqa-head", metavar="FILE", help="the answer head to use with --weights")
    parser.add_argument("--out", default="glip_vqa_eval", help="output folder (default glip_vqa_eval)")
    parser.add_argument("--device", type=device_name, default=None, help="cpu, cuda, cuda:N or mps")
    parser.add_argument("--batch-size", type=positive_int, default=8,
                        help="images per pass, all their questions with them (default 8)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    return parser


def accuracy_lines(accuracy) -> list[str]:
    """The printed summary: overall, then per answer type and per question type (percent)."""
    lines = [f"VQA accuracy {100 * accuracy.overall:.2f} ({len(accuracy.per_question)} questions)"]
    for title, values in (("answer type", accuracy.per_answer_type), ("question type", accuracy.per_question_type)):
        lines.append(f"  per {title}:")
        lines.extend(f"    {name or '(none)':<28} {100 * value:6.2f}" for name, value in values.items())
    return lines


def run(args: argparse.Namespace) -> int:
    from glip.data.vqa import read_vqa
    from glip.evaluation.vqa_metrics import read_vqa_predictions, vqa_accuracy

    if args.vqa_head and args.predictions:
        raise ValueError("--vqa-head goes with a model run; --predictions scores a results file without a model")
    questions = read_vqa(args.questions, args.annotations, args.images, image_pattern=args.image_pattern)
    out = Path(args.out)
    written = []
    if args.predictions is not None:
        predictions = read_vqa_predictions(args.predictions)
    else:
        from glip.evaluation.vqa_eval import predict_answers, results_records
        from glip.predictor import GLIPPredictor
        from glip.vqa_head_files import NO_VQA_HEAD

        predictor = GLIPPredictor.from_pretrained(args.weights, device=args.device)
        if args.vqa_head is not None:
            predictor.load_vqa_head(args.vqa_head)
        if predictor.answerer is None:
            raise ValueError(NO_VQA_HEAD)
        predictions = predict_answers(predictor, questions, progress=not args.no_progress,
                                      batch_size=args.batch_size)
        out.mkdir(parents=True, exist_ok=True)
        results = out / "vqa_results.json"
        results.write_text(json.dumps(results_records(predictions)) + "\n")
        written.append(results)
    accuracy = vqa_accuracy(questions, predictions)
    out.mkdir(parents=True, exist_ok=True)
    metrics = out / "vqa_metrics.json"
    metrics.write_text(json.dumps(accuracy.to_dict(), indent=2) + "\n")
    written.append(metrics)
    for line in accuracy_lines(accuracy):
        print(line)
    print("wrote " + ", ".join(str(path) for path in written))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    return run_command(lambda: run(args), args.debug)


if __name__ == "__main__":
    sys.exit(main())
