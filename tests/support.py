"""Paths shared by the tests (importable from every test directory: tests/ is on sys.path)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def reference_dir() -> Path:
    """``<repo>/../shared/reference`` unless GLIP_REFERENCE_DIR says otherwise."""
    return Path(os.environ.get("GLIP_REFERENCE_DIR", REPO_ROOT.parent / "shared" / "reference"))
