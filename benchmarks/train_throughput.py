"""Training throughput (images per second) of a model config with the real trainer.

Usage::

    python benchmarks/train_throughput.py --config glip-t [--size 800] [--batch-size 1] [--steps 3]
                                          [--warmup 1] [--device cpu|cuda] [--amp off|bf16|fp16]

A few ``det-train`` scenes of the shapes world are generated at ``--size`` pixels and trained on
with `glip.training.Trainer` (AdamW, clipping, the GLIP loss; random initial weights, no EMA, no
checkpoint writes inside the timing). The first ``--warmup`` steps are not timed (allocation,
autotuning); the figure is ``timed steps x batch size / their wall time``. Nothing is downloaded.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from glip.shapes.generate import generate_split  # noqa: E402
from glip.training.train_config import TrainConfig  # noqa: E402
from glip.training.trainer import Trainer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="glip-t", help="model preset (glip-t, glip-nano, glip-tiny, ...)")
    parser.add_argument("--size", type=int, default=800, help="image side in pixels (official GLIP-T trains 480-800)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3, help="timed steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", default="off")
    parser.add_argument("--freeze", nargs="*", default=[], help="parameter prefixes to freeze, e.g. text_encoder")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        total = args.warmup + args.steps
        split = generate_split(tmp, "det-train", num_images=total * args.batch_size, seed=0, image_size=args.size)
        config = TrainConfig.from_dict({
            "model": {"config": args.config},
            "data": {"datasets": [{"type": "coco", "annotations": str(split / "annotations.json"),
                                   "images": str(split)}]},
            "input": {"min_sizes": [args.size], "max_size": args.size, "flip_prob": 0.5},
            "optim": {"warmup_steps": 0},
            "train": {"max_steps": total, "batch_size": args.batch_size, "num_workers": 0, "device": args.device,
                      "ema_decay": None, "amp": args.amp, "freeze": args.freeze},
            "output": {"dir": str(Path(tmp) / "run"), "checkpoint_every": 10**9, "progress": False,
                       "tensorboard": False, "log_every": 10**9},
        })
        trainer = Trainer(config)
        stream = trainer.batches()
        times = []
        for step in range(total):
            batch, _, _ = next(stream)
            if trainer.device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            values, taken = trainer.train_step([batch])
            if trainer.device.type == "cuda":
                torch.cuda.synchronize()
            if step >= args.warmup:
                times.append(time.perf_counter() - start)
        stream.close()
    parameters = sum(p.numel() for p in trainer.model.parameters())
    trainable = sum(p.numel() for p in trainer.trainable)
    result = {
        "config": args.config, "size": args.size, "batch_size": args.batch_size, "device": args.device,
        "amp": args.amp, "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
        "parameters": parameters, "trainable_parameters": trainable, "timed_steps": len(times),
        "seconds_per_step": round(sum(times) / len(times), 3),
        "images_per_second": round(len(times) * args.batch_size / sum(times), 4),
        "last_loss": round(float(values["loss"]), 4),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
