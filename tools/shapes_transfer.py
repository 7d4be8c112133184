"""Transfer to a task unseen in training, on the shapes world: the README's transfer table.

The task is the ``zeroshot-novel`` shapes (ellipse, trapezoid, octagon: never in any training
text). Rows: zero-shot, prompt-engineered zero-shot (``configs/shapes-novel-prompts.yaml``), then
prompt tuning / linear probing / full fine-tuning at 1, 3, 5, 10 shots (averaged over seeds) and on
the full training split, each with its trainable-parameter count and output file size.

Data (once)::

    glip shapes generate --out data/shapes --split zeroshot-novel --num-images 300 --seed 1
    glip shapes generate --out data/shapes-novel-train --split zeroshot-novel --num-images 200 --seed 2

Run::

    python tools/shapes_transfer.py --out runs/transfer --seeds 0 1

Every run is a ``glip finetune`` (its command is in the JSON); finished runs are reused when the
script is started again, so an interrupted table continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
from pathlib import Path

from glip.evaluation import evaluate
from glip.predictor import GLIPPredictor
from glip.transfer.finetune import finetune
from glip.transfer.finetune_config import DEFAULT_LR, FinetuneConfig
from glip.evaluation.prompt_overrides import load_prompt_overrides

ROOT = Path(__file__).resolve().parent.parent
SHOTS = (1, 3, 5, 10)
MODES = ("prompt", "linear", "full")


def val_subset(test_file: Path, out: Path, num_images: int) -> Path:
    """The first ``num_images`` images of the test split (keeps every run's evaluation short)."""
    data = json.loads(test_file.read_text())
    keep = {image["id"] for image in data["images"][:num_images]}
    data["images"] = [i for i in data["images"] if i["id"] in keep]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    path = out / f"val{num_images}.json"
    path.write_text(json.dumps(data))
    return path


def zero_shot(val: Path, images: Path, weights: str | None, prompts: Path | None) -> dict:
    """The AP and AP50 of the base model as it is (``prompts``: prompt overrides YAML)."""
    predictor = GLIPPredictor.from_pretrained(weights, device="cpu")
    overrides = load_prompt_overrides(prompts) if prompts else None
    metrics = evaluate(val, predictor, images=images, prompts=overrides, progress=False).metrics
    return {"AP": float(metrics["AP"]), "AP50": float(metrics["AP50"])}


def run_one(args: argparse.Namespace, val: Path, mode: str, shots: int | None, seed: int) -> dict:
    out = Path(args.out) / f"{mode}-{shots or 'all'}-s{seed}"
    done = out / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    command = (f"glip finetune --train {args.train} --train-images {Path(args.train).parent} --val {val} "
               f"--val-images {Path(args.test).parent} --mode {mode} --seed {seed} --steps {args.steps} "
               f"--batch-size {args.batch_size} --out {out}" + (f" --shots {shots}" if shots else ""))
    logging.info("running: %s", command)
    return finetune(FinetuneConfig(
        train=args.train, train_images=str(Path(args.train).parent), val=str(val),
        val_images=str(Path(args.test).parent), weights=args.weights, mode=mode, shots=shots, seed=seed,
        steps=args.steps, batch_size=args.batch_size, out=str(out), progress=False, extra={"command": command}))


def table(rows: list[dict]) -> str:
    lines = ["| method | data | AP | AP50 | trainable parameters | output file |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for row in rows:
        lines.append(f"| {row['method']} | {row['data']} | {row['AP']:.3f} | {row['AP50']:.3f} | "
                     f"{row['params']} | {row['file']} |")
    return "\n".join(lines)


def _size(num_bytes: int) -> str:
    return f"{num_bytes / 1e6:.1f} MB" if num_bytes >= 1e6 else f"{num_bytes / 1e3:.0f} kB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", default="data/shapes-novel-train/zeroshot-novel/annotations.json")
    parser.add_argument("--test", default="data/shapes/zeroshot-novel/annotations.json")
    parser.add_argument("--prompts", default=str(ROOT / "configs" / "shapes-novel-prompts.yaml"))
    parser.add_argument("--weights", default=None, help="base model (default: the embedded glip-nano)")
    parser.add_argument("--out", default="runs/transfer")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--shots", type=int, nargs="+", default=list(SHOTS))
    parser.add_argument("--modes", nargs="+", default=list(MODES))
    parser.add_argument("--val-images", type=int, default=100, help="test images per evaluation")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--table", default="table", help="name of the table files written to --out (.md, .json)")
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("glip").setLevel(logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    val = val_subset(Path(args.test), out, args.val_images)
    images = Path(args.test).parent
    rows = [{"method": "zero-shot (category names)", "data": "none", **zero_shot(val, images, args.weights, None),
             "params": 0, "file": "-"},
            {"method": "zero-shot, prompt-engineered (configs/shapes-novel-prompts.yaml)", "data": "none",
             **zero_shot(val, images, args.weights, Path(args.prompts)), "params": 0, "file": "-"}]
    for mode in args.modes:
        for shots in [*args.shots, None]:
            results = [run_one(args, val, mode, shots, seed) for seed in (args.seeds if shots else args.seeds[:1])]
            ap = [r["metrics"]["AP"] for r in results]
            spread = f" ± {statistics.stdev(ap):.3f}" if len(ap) > 1 else ""
            rows.append({"method": f"{mode} tuning (lr {DEFAULT_LR[mode]:g}, {args.steps} steps)",
                         "data": (f"{shots}-shot, {len(results)} seed{'s' if len(results) > 1 else ''}{spread}" if shots else
                                  f"all {results[0]['train_images']} images"),
                         "AP": statistics.mean(ap), "AP50": statistics.mean(r["metrics"]["AP50"] for r in results),
                         "params": f"{results[0]['trainable_parameters']:,}", "file": _size(results[0]["file_bytes"])})
            logging.info("%s %s: AP %.3f", mode, shots or "all", rows[-1]["AP"])
    markdown = table(rows)
    (out / f"{args.table}.md").write_text(markdown + "\n")
    (out / f"{args.table}.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
