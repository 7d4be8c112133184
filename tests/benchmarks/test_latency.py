"""benchmarks/latency.py: the FLOP count of the deformable convs, and a --tiny run's printed figures."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from glip.modeling.dyhead import DeformConvNorm

REPO_ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO_ROOT / "benchmarks"


def _load_measures():
    spec = importlib.util.spec_from_file_location("latency_measures", BENCHMARKS / "measures.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("stride", [1, 2])
def test_deform_conv_flops_equal_the_matrix_product_of_the_sampled_form(stride: int) -> None:
    measures = _load_measures()
    torch.manual_seed(0)
    conv = DeformConvNorm(8, stride=stride, groups=4, method="sampled").eval()
    x = torch.randn(1, 8, 10, 12)
    out_h, out_w = (10 + stride - 1) // stride, (12 + stride - 1) // stride
    offset = torch.randn(1, 18, out_h, out_w)
    mask = torch.rand(1, 9, out_h, out_w)

    # The sampled form is one grid_sample and one [O, C*9] x [C*9, positions] product, which the
    # plain counter sees; torchvision's op it does not see, hence the formula.
    with torch.inference_mode(), FlopCounterMode(display=False) as plain:
        conv(x, offset, mask)
    with torch.inference_mode():
        counted = measures.count_flops(lambda: conv(x, offset, mask), [conv])

    assert counted.deform_conv == 2 * 8 * 8 * 9 * out_h * out_w
    assert counted.deform_conv == plain.get_total_flops()
    assert counted.total == counted.deform_conv  # GroupNorm counts 0
    assert conv.method == "sampled"  # restored after counting


def _numbers(line: str) -> tuple[str, list[float]]:
    name, *values = re.split(r"\s{2,}", line.strip())
    return name, [float(value) for value in values]


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 2e-3 * max(abs(a), abs(b))  # figures are printed to 4 significant digits


def test_tiny_run_prints_times_flops_limits_and_memory() -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "src"), env.get("PYTHONPATH", "")])
    result = subprocess.run([sys.executable, str(BENCHMARKS / "latency.py"), "--tiny", "--repeats", "2",
                             "--warmup", "1", "--threads", "1"], capture_output=True, text=True, env=env,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()

    rate = float(re.search(r"the limit uses ([0-9.e+-]+) GFLOP/s", result.stdout).group(1))
    assert rate > 0
    names = ["glip-tiny model alone", "glip-tiny user path", "Grounding-DINO (toy config) model alone",
             "Grounding-DINO (toy config) user path"]
    rows = {}
    for line in lines:
        if line.split("  ")[0] in names:
            name, values = _numbers(line)
            rows[name] = values
    assert sorted(rows) == sorted(names)
    for name, (median, minimum, gflop, gflops, limit, times_limit, peak_mib, before_mib) in rows.items():
        assert 0 < minimum <= median, name
        assert gflop > 0, name
        assert _close(gflops, gflop / median), name
        assert _close(limit, gflop / rate), name
        assert _close(times_limit, median / limit), name
        assert 0 < before_mib <= peak_mib, name

    deform = {name: float(value) for name, value in
              re.findall(r"^(.+): [0-9.e+-]+ GFLOP, of which deformable convs ([0-9.e+-]+)", result.stdout, re.M)}
    assert deform["glip-tiny model alone"] > 0
    assert deform["glip-tiny model alone"] == deform["glip-tiny user path"]  # the same image, the same convs
    assert deform["Grounding-DINO (toy config) model alone"] == 0
    # The user path runs the text side on the prompt's 10 real tokens, not the 256-token window.
    assert rows["glip-tiny user path"][2] < rows["glip-tiny model alone"][2]

    for glip, dino, label in ((names[0], names[2], "model alone"), (names[1], names[3], "user path")):
        match = re.search(rf"ratio {re.escape(glip)} / {re.escape(dino)}: median ([0-9.e+-]+), min ([0-9.e+-]+)",
                          result.stdout)
        assert match is not None, label
        assert _close(float(match.group(1)), rows[glip][0] / rows[dino][0]), label
        assert _close(float(match.group(2)), rows[glip][1] / rows[dino][1]), label
