"""``glip eval``: evaluate a model, or a predictions file, on a detection, grounding or suite dataset.

Usage::

    glip eval --weights W --dataset instances_val2017.json --images val2017 [--batch-size 4]
    glip eval --dataset instances_val2017.json --predictions out/predictions.json   # no model
    glip eval --weights W --dataset lvis_v1_minival.json --images coco/ --fixed-ap
    glip eval --weights W --dataset flickr_test.jsonl --images flickr30k/          # grounding
    glip eval --weights W --dataset odinw.yaml                                       # a suite
    glip eval --weights W --dataset instances_val2017.json --images val2017 --masks  # + mask AP
    torchrun --standalone --nproc_per_node 2 -m glip.evaluation.cli --weights W --dataset D

Writes ``metrics.json``, ``report.md``, plots and (after a model run) the predictions to ``--out``.
Errors are one line on stderr with exit code 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from glip.cli_errors import run_command

logger = logging.getLogger("glip")



def build_parser(prog: str = "glip eval") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Evaluate GLIP: box AP (COCO, LVIS, fixed AP), "
                                     "phrase-grounding recall, or a multi-dataset suite.")
    parser.add_argument("--dataset", required=True, metavar="SPEC",
                        help="COCO/LVIS detection JSON, MDETR grounding JSON, ODVG grounding .jsonl, "
                             "or a suite .yaml")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--weights", help="our .safetensors, an official .pth or an official file name "
                                          "(default: the embedded model)")
    source.add_argument("--predictions", metavar="FILE_OR_DIR",
                        help="evaluate this COCO-results JSON instead of running a model (for a suite: a "
                             "folder of <dataset name>.json)")
    parser.add_argument("--config", choices=["glip-t", "glip-t-a", "glip-l"], help="architecture of --weights")
    parser.add_argument("--images", help="image folder (default: the annotation file's folder)")
    parser.add_argument("--task", choices=["detection", "grounding"], help="default: from the file")
    parser.add_argument("--name", help="dataset name in reports (default: the file's stem)")
    parser.add_argument("--prompts", metavar="YAML",
                        help="prompt engineering: category (name or id) -> descriptive prompt, e.g. "
                             "'stingray: stingray, which is flat and round' (detection files)")
    parser.add_argument("--out", default="glip_eval", help="output folder (default glip_eval)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--batch-size", type=int, default=1, help="images per forward pass (default 1)")
    parser.add_argument("--max-detections", type=int, default=None,
                        help="detections kept per image (default 100; 300 for LVIS and fixed AP)")
    parser.add_argument("--fixed-ap", action="store_true",
                        help="fixed-AP protocol: top-k detections per category over the dataset, no per-image cap")
    parser.add_argument("--fixed-ap-limit", type=int, default=10_000, metavar="K",
                        help="detections kept per category with --fixed-ap (default 10000)")
    parser.add_argument("--skip-missing-images", action="store_true",
                        help="evaluate on the images found on disk instead of stopping when some are missing")
    parser.add_argument("--rerun-image-side", action="store_true",
                        help="run the whole model per prompt chunk (official way; slower, same numbers)")
    parser.add_argument("--masks", action="store_true",
                        help="run the model's mask head too and report mask AP (COCO segm, LVIS) beside box AP "
                             "(a model with a mask head; ground truth with 'segmentation')")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    return parser


def _needs_model(args: argparse.Namespace) -> bool:
    if args.predictions is not None:
        return False
    if Path(args.dataset).suffix in (".yaml", ".yml"):
        from glip.evaluation.suite import load_suite

        return any(entry.predictions is None for entry in load_suite(args.dataset).entries)
    return True


def _summary(result) -> list[str]:
    from glip.evaluation.report import percent

    if result.task == "suite":
        lines = [f"{result.name}: mean AP {percent(result.metrics['mean_AP'])} over "
                 f"{result.metrics['num_detection_datasets']} detection datasets"]
        return lines + ["  " + line for item in result.results for line in _summary(item)]
    if result.task == "grounding":
        values = "  ".join(f"{protocol.replace('_', ' ')}: " + " ".join(
            f"{label.replace('_', ' ')} {percent(v)}" for label, v in recalls.items())
            for protocol, recalls in result.metrics.items())
        return [f"{result.name} ({result.num_phrases} phrases): {values}"]
    keys = [k for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf") if k in result.metrics]
    values = "  ".join(f"{k} {percent(result.metrics[k])}" for k in keys)
    lines = [f"{result.name} ({result.protocol['name']}, {result.num_images} images): {values}"]
    if result.mask_metrics is not None:
        masks = "  ".join(f"{k} {percent(result.mask_metrics[k])}" for k in keys if k in result.mask_metrics)
        lines.append(f"{result.name} masks: {masks}")
    return lines


def _no_mask_head(weights: str | None, config_name: str) -> str:
    model = f"{weights} ({config_name})" if weights else f"the embedded model {config_name}"
    return (f"--masks: {model} has no mask head, so it gives no masks to compute mask AP from: evaluate a model "
            "trained with one (model config mask_head.enabled, e.g. configs/glipv2-nano.yaml), or leave out --masks")


def run(args: argparse.Namespace) -> int:
    from glip.distributed import init_distributed
    from glip.evaluation.report import write_report
    from glip.evaluation.runner import evaluate

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.max_detections is not None and args.max_detections < 1:
        raise ValueError(f"--max-detections must be >= 1, got {args.max_detections}")
    if args.masks and args.predictions is not None:
        raise ValueError("--masks runs the model's mask head; a predictions file gives mask AP by itself when "
                         "its detections carry 'segmentation': leave out --masks")
    predictor = None
    context = None
    needs_model = _needs_model(args)
    if not needs_model and int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun without a model there is nothing to share: rank 0 does it all
    try:
        if needs_model:
            from glip.predictor import GLIPPredictor

            context = init_distributed(args.device)
            predictor = GLIPPredictor.from_pretrained(args.weights, device=context.device, config=args.config)
            if args.masks and predictor.model.mask_head is None:
                raise ValueError(_no_mask_head(args.weights, predictor.model.config.name))
        options = dict(batch_size=args.batch_size, skip_missing_images=args.skip_missing_images,
                       progress=not args.no_progress, context=context, fixed_ap=args.fixed_ap,
                       per_category_limit=args.fixed_ap_limit, reuse_image_features=not args.rerun_image_side)
        if args.max_detections is not None:
            options["max_detections"] = args.max_detections
        if args.masks:
            options["masks"] = True
        prompts = None
        if args.prompts:
            from glip.evaluation.prompt_overrides import load_prompt_overrides

            prompts = load_prompt_overrides(args.prompts)
        result = evaluate(args.dataset, predictor, args.predictions, images=args.images, task=args.task,
                          name=args.name, prompts=prompts, **options)
        if result is None:  # a non-main rank of torchrun
            return 0
        written = write_report(result, args.out, plots=not args.no_plots, save_predictions_file=predictor is not None)
        for line in _summary(result):
            print(line)
        print("wrote " + ", ".join(str(path) for path in written.values()))
        return 0
    finally:
        if context is not None:
            context.close()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    return run_command(lambda: run(args), args.debug)


if __name__ == "__main__":
    sys.exit(main())
