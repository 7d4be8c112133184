"""VQA evaluation throughput: one question per pass against batched (image, question) pairs, in one run.

Usage::

    python benchmarks/vqa_throughput.py --weights runs/vqa-shapes/model.safetensors \
        --questions data/shapes-test/vqa/vqa.jsonl [--images 48] [--batch-size 8] [--per-pass 16] [--threads N]

The model needs its VQA answer head beside it (``glip vqa-train`` writes it). The first
``--images`` images of the questions file, each with all its questions, are answered twice with
`glip.evaluation.vqa_eval.predict_answers`:

* **one at a time**: one image per pass, one question per text-side and fusion pass (the path before
  batching: ``batch_size=1``, ``questions_per_pass=1``);
* **batched**: ``--batch-size`` images per pass, their questions ``--per-pass`` at a time.

Each row is timed after one untimed image of warm-up. Printed: questions, seconds, questions/s and
images/s per row, the batched/one-at-a-time speed ratio, and how many best answers the two agree on
(they should all agree: padding a question changes no score).
"""

from __future__ import annotations

import argparse
import time

import torch

from glip.data.vqa import read_vqa
from glip.evaluation.vqa_eval import predict_answers
from glip.predictor import GLIPPredictor


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True, help="a model with its VQA head beside it")
    parser.add_argument("--questions", required=True, help="a .jsonl of {image, question, answers} or VQA2.0 JSON")
    parser.add_argument("--images", type=int, default=48, help="images answered per row (default 48)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per pass, batched row (default 8)")
    parser.add_argument("--per-pass", type=int, default=16, help="questions per fusion pass, batched row (default 16)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    if min(args.images, args.batch_size, args.per_pass) < 1:
        parser.error("--images, --batch-size and --per-pass must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    predictor = GLIPPredictor.from_pretrained(args.weights, device="cpu")
    if predictor.answerer is None:
        raise SystemExit(f"{args.weights} has no VQA head beside it: train one with glip vqa-train")
    questions = read_vqa(args.questions)
    images = list(dict.fromkeys(q.image for q in questions))[: args.images + 1]
    warmup = [q for q in questions if q.image == images[0]]
    timed = [q for q in questions if q.image in set(images[1:])]
    rows = {}
    for name, batch_size, per_pass in (("one at a time", 1, 1), ("batched", args.batch_size, args.per_pass)):
        predictor.answerer.questions_per_pass = per_pass
        predict_answers(predictor, warmup, batch_size=batch_size)
        started = time.perf_counter()
        answers = predict_answers(predictor, timed, batch_size=batch_size)
        rows[name] = (time.perf_counter() - started, answers)
    print(f"{len(timed)} questions on {len(images) - 1} images, {torch.get_num_threads()} threads")
    print(f"{'row':<16} {'seconds':>8} {'questions/s':>12} {'images/s':>9}")
    for name, (seconds, _) in rows.items():
        print(f"{name:<16} {seconds:8.1f} {len(timed) / seconds:12.2f} {(len(images) - 1) / seconds:9.2f}")
    (slow, one), (fast, batched) = rows["one at a time"], rows["batched"]
    agree = sum(one[key] == batched[key] for key in one)
    print(f"batched / one at a time: {slow / fast:.2f}x questions/s; best answers agree on {agree} of {len(one)}")


if __name__ == "__main__":
    main()
