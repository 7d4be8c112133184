"""benchmarks/profile_modules.py: a --tiny run prints each module's time, with block indices folded."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
ROW = re.compile(r"^(\S+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)%$")


def test_tiny_run_prints_module_times_that_fit_in_the_call() -> None:
    done = subprocess.run([sys.executable, str(BENCHMARKS / "profile_modules.py"), "--tiny", "--repeats", "1"],
                          capture_output=True, text=True, timeout=300, cwd=BENCHMARKS)
    assert done.returncode == 0, done.stderr[-2000:]
    total = float(re.search(r"([\d.]+) s per detect call", done.stdout).group(1))
    rows = {m.group(1): (int(m.group(2)), float(m.group(3)), float(m.group(4)))
            for m in map(ROW.match, done.stdout.splitlines()) if m}
    assert {"head", "backbone", "fpn", "text_encoder", "head.blocks.*", "head.blocks.*.fusion"} <= set(rows)
    assert rows["head.blocks.*"][0] == 2  # glip-tiny's two fused blocks, summed under one key
    assert not any(re.search(r"\.\d+(\.|$)", key) for key in rows)
    for calls, seconds, share in rows.values():
        assert calls >= 1 and 0 <= seconds <= total and share <= 100.0
    # a child's time is inside its parent's
    assert rows["head.blocks.*.fusion"][1] <= rows["head.blocks.*"][1] <= rows["head"][1]
    assert rows["head"][1] + rows["backbone"][1] <= total
