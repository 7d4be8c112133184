"""The ``glip`` command line: ``glip detect`` and ``glip convert``; the other sub-commands live in
their own modules (`DELEGATED`).

Errors are one line on stderr and a non-zero exit code; ``--debug`` shows the traceback. Parsing
arguments and checking the input pictures need neither torch nor the model: the heavy modules are
imported inside the functions that use them, so ``--help``, a wrong option or a missing file
answer at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from glip.cli_args import device_name, positive_float, positive_int, probability
from glip.cli_errors import run_command
from glip.cli_outputs import OutputPaths, plan_outputs, png_marker
from glip.config import PRESETS
from glip.hub import resolve_weights
from glip.images import DEFAULT_MAX_MEGAPIXELS, load_image

logger = logging.getLogger("glip")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glip", description="GLIP: grounded language-image detection")
    sub = parser.add_subparsers(dest="command", required=True)

    detect = sub.add_parser("detect", help="detect classes or caption phrases in images")
    detect.add_argument("images", nargs="+", help="image files")
    prompt = detect.add_mutually_exclusive_group()
    prompt.add_argument("--classes", nargs="+", metavar="NAME", help="class names (any number)")
    prompt.add_argument("--caption", help="a free caption to ground")
    detect.add_argument("--phrase", action="append", default=None, metavar="P",
                        help="a phrase of the caption to ground (repeatable); default: its noun phrases")
    detect.add_argument("--weights", help="our .safetensors, an official .pth, or an official file name "
                                          "(default: the embedded model)")
    detect.add_argument("--config", choices=sorted(PRESETS), metavar="NAME",
                        help="architecture of --weights (checked against the file; inferred when omitted): "
                             + ", ".join(sorted(PRESETS)))
    detect.add_argument("--adapter", action="append", default=None, metavar="FILE",
                        help="a tuned task (glip finetune's adapter.safetensors) on the same base model "
                             "(repeatable: each task runs on the images, the base model loaded once)")
    detect.add_argument("--threshold", type=probability, default=0.5, help="minimum score (default 0.5)")
    detect.add_argument("--max-detections", type=positive_int, default=None,
                        help="most detections kept per image (default: the model's, 100)")
    detect.add_argument("--all-names", action="store_true",
                        help="keep every (box, name) pair above the threshold; by default each object is shown "
                             "once, under its best-scoring name")
    detect.add_argument("--masks", action="store_true",
                        help="instance masks too (a model trained with a mask head): each detection's segmentation "
                             "as COCO RLE in the JSON, a translucent fill in the picture")
    detect.add_argument("--out", default="glip_out",
                        help="output folder (default glip_out): NAME.json and an annotated NAME.png per image, NAME "
                             "being the picture's stem; a result never replaces an input or a file that is not an "
                             "earlier glip result: it becomes NAME.det, and a repeated stem NAME-2, NAME-3, ...")
    detect.add_argument("--max-megapixels", type=positive_float, default=DEFAULT_MAX_MEGAPIXELS, metavar="MP",
                        help="largest picture accepted, read from the file header before decoding "
                             f"(default {DEFAULT_MAX_MEGAPIXELS})")
    detect.add_argument("--device", type=device_name, default=None,
                        help="cpu, cuda, cuda:N or mps (default: cuda when available)")
    detect.add_argument("--batch-size", type=positive_int, default=1, help="images per forward pass (default 1)")
    _add_common(detect)

    for name, (_, help_text) in DELEGATED.items():
        sub.add_parser(name, help=f"{help_text} (glip {name} --help)", add_help=False)

    convert = sub.add_parser(
        "convert", help="turn an official GLIP .pth or a training checkpoint (.pt) into our .safetensors format",
        epilog="examples: glip convert glip_tiny_model_o365_goldg.pth glip-t.safetensors; "
               "glip convert runs/x/checkpoints/step_00000800.pt x.safetensors --dtype float16")
    convert.add_argument("checkpoint", help="an official checkpoint (.pth) or a training checkpoint of glip train (.pt)")
    convert.add_argument("output", help="output .safetensors (a .json config is written beside it)")
    convert.add_argument("--config", choices=["glip-t", "glip-t-a", "glip-l"],
                         help="official checkpoints: expected architecture (checked; inferred when omitted)")
    convert.add_argument("--ema", action=argparse.BooleanOptionalAction, default=None,
                         help="training checkpoints: the EMA weights or (--no-ema) the trained ones "
                              "(default: EMA when the run kept one)")
    convert.add_argument("--dtype", choices=["float16", "float32"], default=None,
                         help="stored floating-point type (default: the model's, float32)")
    convert.add_argument("--keep-pretraining-heads", action="store_true",
                         help="training checkpoints: keep GLIPv2's training-only pre-training heads (inter-image "
                              "projections, MLM head) for continued pre-training (default: left out)")
    convert.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    _add_common(convert)
    return parser


def run_detect(args: argparse.Namespace) -> int:

    if args.phrase and args.caption is None:
        raise ValueError("--phrase needs --caption")
    if args.classes is None and args.caption is None and not args.adapter:
        raise ValueError("say what to detect: --classes NAME ..., --caption TEXT, or --adapter TASK.safetensors")
    max_pixels = int(args.max_megapixels * 1_000_000)
    for image in args.images:
        load_image(image, max_pixels=max_pixels)  # fail fast, with the file's name, before loading the model
    if args.weights is not None:
        resolve_weights(args.weights)  # a missing file or an unreachable Hub answers before the model stack loads
    adapters = _read_adapters(args.adapter or [])
    out = Path(args.out)
    plan = plan_outputs(args.images, out, [f".{adapter.name}" for adapter in adapters] or [""])

    from glip.predictor import GLIPPredictor

    predictor = GLIPPredictor.from_pretrained(args.weights, device=args.device, config=args.config)
    if args.masks and predictor.model.mask_head is None:
        from glip.engine import NO_MASK_HEAD

        raise ValueError(NO_MASK_HEAD.replace("leave masks off", "leave out --masks"))
    tasks = [predictor.add_adapter(adapter).name for adapter in adapters] or [None]
    out.mkdir(parents=True, exist_ok=True)
    for task, outputs in zip(tasks, plan):
        results = predictor.detect(args.images, classes=args.classes, caption=args.caption, phrases=args.phrase,
                                   threshold=args.threshold, max_detections=args.max_detections,
                                   batch_size=args.batch_size, progress=len(args.images) > 1, adapter=task,
                                   all_names=args.all_names, masks=args.masks)
        _write_detections(args, results, outputs, max_pixels)
    return 0


def _read_adapters(paths: list[str]) -> list:
    """The ``--adapter`` files, read before the model so that their task names name the results."""
    if not paths:
        return []
    from glip.adapters import load_adapter

    return [load_adapter(path) for path in paths]


def _write_detections(args: argparse.Namespace, results: list, outputs: list[OutputPaths], max_pixels: int) -> None:
    from glip.visualize import draw_detections

    for image_path, result, paths in zip(args.images, results, outputs):
        paths.json.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        draw_detections(load_image(image_path, max_pixels=max_pixels), result).save(paths.png, pnginfo=png_marker())
        print(f"{image_path}: {len(result.detections)} detections (threshold {args.threshold}) -> "
              f"{paths.json}, {paths.png}")
        print(f"  {'phrase':<24} {'score':>6}  box (x1, y1, x2, y2)")
        for detection in result.detections[:20]:
            box = ", ".join(f"{v:.1f}" for v in detection.bbox_xyxy)
            print(f"  {detection.phrase[:24]:<24} {detection.score:6.3f}  ({box})")
        if len(result.detections) > 20:
            print(f"  ... {len(result.detections) - 20} more in the JSON")


def run_convert(args: argparse.Namespace) -> int:
    """An official ``.pth`` or a training checkpoint (``.pt``, from glip train) -> our format."""
    source, output = Path(args.checkpoint), Path(args.output)
    if output.suffix != ".safetensors":
        raise ValueError(f"the output is a .safetensors file (a .json config is written beside it); got {output}")
    if not source.is_file():
        raise FileNotFoundError(f"checkpoint {source} does not exist")
    written = [output, output.with_suffix(".json")]
    if any(path.exists() and path.resolve() == source.resolve() for path in written):
        raise ValueError(f"the output {output} would replace the checkpoint it is converted from; choose another name")
    existing = [str(path) for path in written if path.exists()]
    if existing and not args.overwrite:
        raise FileExistsError(f"{' and '.join(existing)} already exist{'s' if len(existing) == 1 else ''}: "
                              "pass --overwrite to replace, or choose another output")
    import torch

    dtype = getattr(torch, args.dtype) if args.dtype else None
    if source.suffix == ".pt":
        from glip.training.export import export_training_checkpoint

        if args.config is not None:
            raise ValueError("--config checks official checkpoints; a training checkpoint stores its model config")
        path = export_training_checkpoint(source, output, use_ema=args.ema, dtype=dtype,
                                          keep_pretraining_heads=args.keep_pretraining_heads)
        print(f"converted training checkpoint {source} -> {path} and {path.with_suffix('.json')}")
        return 0
    from glip.checkpoint import load_official, save_glip

    if args.ema is not None:
        raise ValueError(f"--ema/--no-ema choose the weights of a training checkpoint (.pt); {source.name} is "
                         "read as an official checkpoint")
    if args.keep_pretraining_heads:
        raise ValueError(f"--keep-pretraining-heads applies to training checkpoints (.pt); {source.name} is read "
                         "as an official checkpoint, which has no GLIPv2 pre-training heads")
    model = load_official(source, args.config)
    path = save_glip(model, output, {"source": source.name}, dtype=dtype)
    print(f"converted {source} ({model.config.name}) -> {path} and {path.with_suffix('.json')}")
    return 0


# Sub-commands implemented in their own modules, each with ``main(argv) -> int``.
DELEGATED = {
    "train": ("glip.training.train_cli", "train a model from a YAML config"),
    "eval": ("glip.evaluation.cli", "evaluate on COCO/LVIS/grounding datasets or a suite"),
    "shapes": ("glip.shapes.cli", "the procedural shapes world (generate, train, report)"),
    "finetune": ("glip.transfer.cli", "tune to a task: prompt tuning, linear probe, full fine-tuning, few-shot"),
    "serve": ("glip.serving.cli", "HTTP API and web page"),
    "label": ("glip.labelling.cli", "box the noun phrases of image-text pairs with a teacher (self-training data)"),
    "caption": ("glip.captioning.cli", "describe pictures with a model's caption head (--grounded: box its phrases)"),
    "caption-train": ("glip.captioning.train_cli", "train a caption head from a YAML config"),
    "caption-eval": ("glip.captioning.eval_cli", "caption a caption file's images and print BLEU-4 and CIDEr"),
    "vqa": ("glip.vqa_cli", "answer questions about images (a model with a VQA head)"),
    "vqa-train": ("glip.training.vqa_train_cli", "fine-tune a VQA answer head on VQA2.0 or JSON Lines questions"),
    "vqa-eval": ("glip.evaluation.vqa_cli", "VQA accuracy overall and per question type"),
    "export": ("glip.export.cli", "a detector with its prompt baked in, as an ONNX file"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in DELEGATED:
        import importlib

        return importlib.import_module(DELEGATED[argv[0]][0]).main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    handlers = {"detect": run_detect, "convert": run_convert}
    return run_command(lambda: handlers[args.command](args), args.debug)


if __name__ == "__main__":
    sys.exit(main())
