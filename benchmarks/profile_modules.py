"""Where GLIP-T's user path spends its time, by module: one `GLIPPredictor.detect` on a picture file
(random weights, 800x1333, the 4-class prompt of latency.py), with wall-clock hooks on the modules
down to ``--depth`` dots in their names. Block indices are folded together ("head.blocks.*.fusion"
sums the six blocks), and each row's time includes its children's.

    python benchmarks/profile_modules.py [--tiny] [--depth 4] [--repeats 2]

Prints one table: module, calls per run, seconds per run (median over the repeats), and the share
of the whole detect call. `--tiny` runs glip-tiny at 64x96 (checks the script; figures say nothing).
"""

from __future__ import annotations

import os

# Before anything imports transformers (glip.tokenizer does): never touch the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import argparse  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from latency import CLASS_NAMES, build_glip, write_picture  # noqa: E402

_INDEX = re.compile(r"\.\d+(?=\.|$)")


def module_key(name: str) -> str:
    """"head.blocks.3.fusion" -> "head.blocks.*.fusion": the same layer of every block summed."""
    return _INDEX.sub(".*", name)


class ModuleClock:
    """Forward pre/post hooks that add each module's wall-clock seconds and calls under its key."""

    def __init__(self, model: torch.nn.Module, depth: int) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._started: dict[int, list[float]] = defaultdict(list)
        self._handles = []
        for name, module in model.named_modules():
            if name and name.count(".") < depth:
                self._handles.append(module.register_forward_pre_hook(self._enter))
                self._handles.append(module.register_forward_hook(self._leave(module_key(name))))

    def _enter(self, module: torch.nn.Module, _inputs) -> None:
        self._started[id(module)].append(time.perf_counter())

    def _leave(self, key: str):
        def hook(module: torch.nn.Module, _inputs, _output) -> None:
            self.seconds[key] += time.perf_counter() - self._started[id(module)].pop()
            self.calls[key] += 1
        return hook

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="glip-tiny at 64x96: checks the script")
    parser.add_argument("--depth", type=int, default=4, help="deepest module level timed (dots in the name + 1)")
    parser.add_argument("--repeats", type=int, default=2, help="timed detect calls (after one warm-up)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.depth < 1 or args.repeats < 1:
        parser.error("--depth and --repeats must be at least 1")
    # the fields latency.build_glip reads
    args.height, args.width = (64, 96) if args.tiny else (800, 1333)
    args.candidate_threshold = None
    return args


def main(argv: list[str] | None = None) -> int:
    from glip.predictor import GLIPPredictor

    args = parse_args(argv)
    device = torch.device("cpu")
    model = build_glip(args, device)
    predictor = GLIPPredictor(model, device=device)
    with tempfile.TemporaryDirectory() as folder, torch.inference_mode():
        picture = write_picture(Path(folder), args.height, args.width)
        predictor.detect(str(picture), classes=CLASS_NAMES)  # warm-up, unhooked
        clock = ModuleClock(model, args.depth)
        totals, per_run = [], defaultdict(list)
        for _ in range(args.repeats):
            clock.reset()
            started = time.perf_counter()
            predictor.detect(str(picture), classes=CLASS_NAMES)
            totals.append(time.perf_counter() - started)
            for key, seconds in clock.seconds.items():
                per_run[key].append(seconds)
        calls = dict(clock.calls)
        clock.remove()
    total = statistics.median(totals)
    print(f"{'glip-tiny' if args.tiny else 'GLIP-T'} user path, {args.height}x{args.width}, "
          f"{torch.get_num_threads()} threads: {total:.3f} s per detect call (median of {args.repeats})")
    print(f"{'module (inclusive of its children)':<48} {'calls':>6} {'s per run':>10} {'share':>7}")
    for key in sorted(per_run, key=lambda k: -statistics.median(per_run[k])):
        seconds = statistics.median(per_run[key])
        print(f"{key:<48} {calls[key]:>6} {seconds:>10.4f} {seconds / total:>7.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
