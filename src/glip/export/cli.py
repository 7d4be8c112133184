"""``glip export``: a fixed-prompt detector as an ONNX file, checked with onnxruntime against PyTorch.

    glip export [MODEL] --classes star circle --out shapes.onnx
    glip export glip_tiny_model_o365_goldg.pth --classes person car --out coco2.onnx --size 800 1344
    glip export --adapter shapes-task.safetensors --out task.onnx

MODEL is ``glip-nano`` (the embedded model, the default), our ``.safetensors``, an official ``.pth``
or an official file name. After writing, the command runs the file with onnxruntime and the model
with PyTorch on one picture (``--image``, default a fixed random picture) and prints the largest
absolute differences of the scores, centerness and boxes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from glip.cli_args import positive_int
from glip.cli_errors import run_command

DEFAULT_MODEL = "glip-nano"
FORMATS = ("onnx",)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glip export", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default=DEFAULT_MODEL,
                        help=f"{DEFAULT_MODEL} (the embedded model, default), our .safetensors, an official .pth "
                             "or an official file name")
    parser.add_argument("--format", choices=FORMATS, default="onnx", help="output format (onnx)")
    prompt = parser.add_mutually_exclusive_group()
    prompt.add_argument("--classes", nargs="+", metavar="NAME", help="the class names baked into the graph")
    prompt.add_argument("--adapter", metavar="FILE", help="a tuned task (glip finetune's adapter.safetensors): "
                                                          "its tensors and its categories are baked in")
    parser.add_argument("--config", help="architecture of MODEL when it is an official file (checked; inferred "
                                         "when omitted)")
    parser.add_argument("--out", required=True, help="the .onnx file to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--size", type=positive_int, nargs=2, metavar=("H", "W"), default=None,
                        help="the graph's fixed input size, multiples of 32 (default: a square of the model's "
                             "shorter-side size, 320 for glip-nano, 800 for the official models)")
    parser.add_argument("--opset", type=positive_int, default=None, help="ONNX opset (default 17; 16 or later)")
    parser.add_argument("--image", help="the picture of the onnxruntime check (default: a fixed random picture)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def check_output(out: Path, overwrite: bool) -> None:
    """Refuse an output that is not a .onnx file in an existing folder, or that exists (without --overwrite)."""
    if out.suffix.lower() != ".onnx":
        raise ValueError(f"--out must name a .onnx file, got {out}")
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder: name the .onnx file to write")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"the folder of --out ({out.parent}) does not exist: create it or choose another path")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists: pass --overwrite to replace it, or choose another --out")


def _load_predictor(model: str, config: str | None):
    from glip.predictor import GLIPPredictor

    weights = None if model == DEFAULT_MODEL else model
    if weights is not None and config is None and not Path(weights).exists():
        from glip.hub import resolve_weights

        resolve_weights(weights)  # an unknown name answers with the list of known ones
    return GLIPPredictor.from_pretrained(weights, device="cpu", config=config)


def _check_picture(image: str | None, meta):
    """The check input: ``image`` through the numpy preprocessing, or a fixed random picture."""
    import numpy as np

    from glip.export.runtime import preprocess

    if image is None:
        picture = np.random.default_rng(0).integers(0, 256, (meta.input_height, meta.input_width, 3), dtype=np.uint8)
        return preprocess(picture, meta)[0], "a random picture"
    return preprocess(image, meta)[0], image


def run_export(args: argparse.Namespace) -> int:
    if args.classes is None and args.adapter is None:
        raise ValueError("say what the graph detects: --classes NAME ... or --adapter TASK.safetensors")
    out = Path(args.out)
    check_output(out, args.overwrite)
    if args.image is not None:
        from glip.images import load_image

        load_image(args.image)  # fail before loading the model
    from glip.export.onnx_export import DEFAULT_OPSET, check_onnx, default_input_size, export_onnx, require_onnx

    require_onnx()
    predictor = _load_predictor(args.model, args.config)
    task = predictor.add_adapter(args.adapter).name if args.adapter else None
    chunks = predictor.build_prompts(classes=args.classes, adapter=task)
    size = tuple(args.size) if args.size else default_input_size(predictor.model)
    with predictor.adapter_applied(task):
        meta = export_onnx(predictor.model, chunks, out, size, args.opset or DEFAULT_OPSET)
        images, label = _check_picture(args.image, meta)
        differences = check_onnx(out, predictor.model, chunks, images)
    megabytes = out.stat().st_size / 2 ** 20
    print(f"wrote {out} ({megabytes:.1f} MB): {meta.model}, {len(meta.phrases)} phrases in {len(chunks)} prompt "
          f"chunk(s), input images [1, 3, {size[0]}, {size[1]}]")
    print(f"onnxruntime vs PyTorch on {label}: max abs difference scores {differences['scores']:.2e}, "
          f"centerness {differences['centerness']:.2e}, boxes {differences['boxes']:.2e} px")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    return run_command(lambda: run_export(args), args.debug)
