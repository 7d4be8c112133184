"""The fused head's two hot spots at GLIP-T's shapes, old against new, in one run.

Usage::

    python benchmarks/fused_head.py [--device cpu|cuda] [--scale 1.0] [--tokens 10] [--repeats 5]
                                    [--warmup 1] [--threads N] [--backward]

Shapes: an 800x1333 image (times ``--scale``) padded to a multiple of 32 gives the five FPN levels
the head sees (strides 8..128; 100x168, 50x84, 25x42, 13x21, 7x11 at full size), 256 channels,
a prompt of ``--tokens`` real tokens (768-wide BERT features), GLIP-T's fusion (inner dim 2048,
8 heads). Weights are random; only the amount of computation matters.

* **attention**: ``glip.modeling.fusion.BiAttention`` on all visual tokens, ``order="direct"`` (the
  official order, visual tokens projected to 2048) against ``"reassociated"`` (the default).
* **deformable conv**: the 13 modulated 3x3 deformable convs of one DyHead block over the five
  levels (same level; stride 2 from the finer level; the coarser level with the official
  leading-slice offsets), ``torchvision.ops.deform_conv2d`` against our sampled formulation.

Per pair: median seconds over ``--repeats`` timed runs (after ``--warmup``), the old/new ratio, the
largest difference between the two outputs, and GFLOP/s = 2 x multiply-adds / seconds, where the
multiply-adds are those of the old formulation's matrix products (the work to be done, counted the
same for both, so GFLOP/s compare like the ratio), and for the new attention also its own
multiply-adds. ``--backward`` times forward + backward instead of an inference forward.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Callable

import torch

from glip.modeling.dyhead import leading_slice
from glip.modeling.deform_conv import deform_conv3x3
from glip.modeling.fusion import BiAttention

CHANNELS, TEXT_DIM, FUSION_DIM, HEADS, CLAMP = 256, 768, 2048, 8, 50000.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--scale", type=float, default=1.0, help="image size factor on 800x1333 (default 1.0)")
    parser.add_argument("--tokens", type=int, default=10, help="real text tokens (default 10)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per formulation (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--backward", action="store_true", help="time forward + backward (training)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not 0 < args.scale <= 4:
        parser.error("--scale must be in (0, 4]")
    if args.tokens < 1 or args.repeats < 1 or args.warmup < 0:
        parser.error("--tokens and --repeats must be at least 1, --warmup at least 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda given but torch.cuda.is_available() is False")
    return args


def level_sizes(scale: float) -> list[tuple[int, int]]:
    """The FPN levels P3..P7 of an 800x1333 image scaled by `scale` and padded to 32."""
    height, width = (-(-max(32, round(side * scale)) // 32) * 32 for side in (800, 1333))
    sizes = [(height // stride, width // stride) for stride in (8, 16, 32)]
    for _ in range(2):  # P6, P7: 3x3 stride-2 convs with padding 1
        h, w = sizes[-1]
        sizes.append(((h - 1) // 2 + 1, (w - 1) // 2 + 1))
    return sizes


def median_seconds(step: Callable[[], torch.Tensor], args: argparse.Namespace,
                   device: torch.device) -> tuple[float, torch.Tensor]:
    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        out = step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times), out


def run(step: Callable[[bool], torch.Tensor], leaves: list[torch.Tensor], backward: bool) -> Callable[[], torch.Tensor]:
    """An inference forward, or forward + backward through `leaves` (returns the output, detached)."""
    def go() -> torch.Tensor:
        if not backward:
            with torch.inference_mode():
                return step()
        for leaf in leaves:
            leaf.grad = None
        out = step()
        out.square().mean().backward()
        return out.detach()
    return go


def attention_pair(args: argparse.Namespace, device: torch.device) -> dict:
    sizes = level_sizes(args.scale)
    positions = sum(h * w for h, w in sizes)
    module = BiAttention(CHANNELS, TEXT_DIM, FUSION_DIM, HEADS, dropout=0.1, clamp=CLAMP).to(device).eval()
    visual = torch.randn(1, positions, CHANNELS, device=device, requires_grad=args.backward)
    text = torch.randn(1, args.tokens, TEXT_DIM, device=device, requires_grad=args.backward)
    text_mask = torch.ones(1, args.tokens, dtype=torch.long, device=device)
    leaves = [visual, text, *module.parameters()]
    results = {}
    for order in ["direct", "reassociated"]:
        module.order = order

        def step() -> torch.Tensor:
            delta_visual, delta_text = module(visual, text, text_mask)
            return torch.cat([delta_visual.flatten(), delta_text.flatten()])
        results[order] = median_seconds(run(step, leaves, args.backward), args, device)
    n, length, e = positions, args.tokens, FUSION_DIM
    text_macs = length * TEXT_DIM * e * 2 + length * e * TEXT_DIM  # key, value, text output projections
    direct = 3 * n * CHANNELS * e + 3 * n * e * length + text_macs  # q/v/out projections; logits, 2 outputs
    new = 3 * n * CHANNELS * HEADS * length + 3 * length * e * CHANNELS + text_macs
    return {"name": f"attention (N={positions}, L={length})", "old": results["direct"], "new": results["reassociated"],
            "old_macs": direct, "new_macs": new}


def deform_pair(args: argparse.Namespace, device: torch.device) -> dict:
    sizes = level_sizes(args.scale)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    levels = [torch.randn(1, CHANNELS, h, w, device=device, generator=generator, requires_grad=args.backward)
              for h, w in sizes]
    offsets = [(2 * torch.randn(1, 18, h, w, device=device, generator=generator)).requires_grad_(args.backward)
               for h, w in sizes]
    masks = [torch.rand(1, 9, h, w, device=device, generator=generator).requires_grad_(args.backward)
             for h, w in sizes]
    weight = (0.02 * torch.randn(CHANNELS, CHANNELS, 3, 3, device=device, generator=generator)).requires_grad_(args.backward)
    bias = torch.zeros(CHANNELS, device=device, requires_grad=args.backward)
    convs = []  # (input level, stride, offset, mask) of one DyHead block
    for index, (h, w) in enumerate(sizes):
        convs.append((index, 1, offsets[index], masks[index]))
        if index > 0:
            convs.append((index - 1, 2, offsets[index], masks[index]))
        if index < len(sizes) - 1:
            ch, cw = sizes[index + 1]
            convs.append((index + 1, 1, leading_slice(offsets[index], ch, cw), leading_slice(masks[index], ch, cw)))
    macs = sum(CHANNELS * CHANNELS * 9 * offset.shape[-2] * offset.shape[-1] for _, _, offset, _ in convs)
    results = {}
    for method in ["torchvision", "sampled"]:
        def step() -> torch.Tensor:
            outs = [deform_conv3x3(levels[i], o, weight, bias, s, m, method) for i, s, o, m in convs]
            return torch.cat([out.flatten() for out in outs])
        results[method] = median_seconds(run(step, [*levels, *offsets, *masks, weight, bias], args.backward),
                                         args, device)
    return {"name": f"deformable conv ({len(convs)} convs, {sizes[0][0]}x{sizes[0][1]}..)",
            "old": results["torchvision"], "new": results["sampled"], "old_macs": macs, "new_macs": macs}


def report(row: dict) -> list[str]:
    (old_s, old_out), (new_s, new_out) = row["old"], row["new"]
    difference = (old_out - new_out).abs().max().item()
    scale = old_out.abs().max().item()
    return [f"{row['name']}",
            f"  old {old_s * 1e3:10.2f} ms  {2 * row['old_macs'] / old_s / 1e9:8.1f} GFLOP/s",
            f"  new {new_s * 1e3:10.2f} ms  {2 * row['old_macs'] / new_s / 1e9:8.1f} GFLOP/s (old's work)"
            + (f", {2 * row['new_macs'] / new_s / 1e9:.1f} GFLOP/s (own {row['new_macs'] / 1e9:.2f} G mult-adds)"
               if row["new_macs"] != row["old_macs"] else ""),
            f"  old/new {old_s / new_s:6.2f}x   max |old - new| {difference:.2e} (max |old| {scale:.2e})"]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    mode = "forward + backward" if args.backward else "inference forward"
    print(f"fused head, GLIP-T shapes x{args.scale}: levels {level_sizes(args.scale)}, {args.tokens} tokens, "
          f"{mode}, {device}, {torch.get_num_threads()} threads, torch {torch.__version__}", flush=True)
    for pair in (attention_pair, deform_pair):
        for line in report(pair(args, device)):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
