"""The web page's COCO RLE decoder (static/rle.js) run by Node against pycocotools' encoder:
masks of many shapes, long runs (several characters a count), empty and full masks."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from glip.data.masks import mask_to_rle

RLE_JS = Path(__file__).resolve().parents[2] / "src" / "glip" / "serving" / "static" / "rle.js"


def _masks() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    masks = [np.zeros((7, 5), bool), np.ones((7, 5), bool), rng.random((13, 17)) > 0.5]
    big = np.zeros((600, 900), bool)  # runs of up to ~540,000 pixels: counts of four characters
    big[100:500, 30:700] = True
    big[250:260, :] = False
    masks.append(big)
    blob = np.zeros((120, 160), bool)
    yy, xx = np.mgrid[:120, :160]
    blob[(yy - 60) ** 2 + (xx - 70) ** 2 < 40 ** 2] = True  # run lengths that shrink and grow: negative differences
    masks.append(blob)
    return masks


def test_the_pages_decoder_reads_pycocotools_rle(tmp_path):
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.skip("Node.js is not installed: the page's RLE decoder is tested only where it is")
    masks = _masks()
    (tmp_path / "rles.json").write_text(json.dumps([mask_to_rle(mask) for mask in masks]))
    script = ("const {rleDecode} = require(process.argv[1]);"
              "const rles = JSON.parse(require('fs').readFileSync(process.argv[2], 'utf8'));"
              "console.log(JSON.stringify(rles.map((r) => { const m = rleDecode(r); "
              "return [m.height, m.width, Buffer.from(m.data).toString('base64')]; })));")
    out = subprocess.run([node, "-e", script, str(RLE_JS), str(tmp_path / "rles.json")], capture_output=True,
                         text=True, check=True, timeout=60)
    decoded = json.loads(out.stdout)
    assert len(decoded) == len(masks)
    for mask, (height, width, data) in zip(masks, decoded):
        assert (height, width) == mask.shape
        column_major = np.frombuffer(base64.b64decode(data), dtype=np.uint8).reshape(width, height).T
        np.testing.assert_array_equal(column_major.astype(bool), mask)


def test_a_faulty_rle_is_refused(tmp_path):
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.skip("Node.js is not installed")
    script = ("const {rleDecode} = require(process.argv[1]);"
              "try { rleDecode({size: [2, 2], counts: '9'}); console.log('decoded'); }"
              "catch (e) { console.log('refused: ' + e.message); }")
    out = subprocess.run([node, "-e", script, str(RLE_JS)], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.startswith("refused: ") and "size" in out.stdout
