"""Decoding uploads: a huge picture becomes the model's input size at once (the same pixels the
predictor would make), its original size is kept for the boxes, and memory goes back when idle."""

from __future__ import annotations

import asyncio
import io
import platform
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from glip.images import PreprocessConfig, load_image, preprocess, resized_size
from glip.serving.memory import IdleMemoryRelease, release_memory
from glip.serving.uploads import DecodedImage, UploadError, decode_upload

NANO_INPUT = PreprocessConfig(min_size=320, max_size=640)  # glip-nano's


def _encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def test_a_huge_png_is_shrunk_to_the_input_size_right_after_decoding():
    picture = Image.new("RGB", (6000, 4000), (40, 90, 200))  # 24 MP, 72 MB decoded, a few kB as a PNG
    picture.paste((250, 250, 250), (1000, 1000, 3000, 2000))
    data = _encoded(picture, "PNG")
    decoded = decode_upload(data, max_pixels=25_000_000, input_size=NANO_INPUT)
    assert decoded.original_size == (6000, 4000)
    assert decoded.pixels.size == (480, 320) and decoded.pixels.mode == "RGB"  # 0.46 MB, not 72
    with pytest.raises(UploadError, match="24.0 megapixels") as refused:
        decode_upload(data, max_pixels=20_000_000, input_size=NANO_INPUT)
    assert refused.value.status_code == 413


def test_the_model_sees_the_same_pixels_as_without_the_early_shrink():
    config = PreprocessConfig(min_size=64, max_size=128)
    pixels = np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    data = _encoded(Image.fromarray(pixels), "PNG")
    decoded = decode_upload(data, max_pixels=10**8, input_size=config)
    assert decoded.pixels.size == (96, 64) and decoded.original_size == (300, 200)
    full = load_image(Image.open(io.BytesIO(data)))
    assert torch.equal(preprocess(decoded.pixels, config), preprocess(full, config))


def test_small_pictures_are_kept_as_they_are():
    data = _encoded(Image.new("RGB", (40, 30), (1, 2, 3)), "PNG")
    decoded = decode_upload(data, max_pixels=10**8, input_size=NANO_INPUT)
    assert decoded.pixels.size == (40, 30) == decoded.original_size


def test_a_turned_jpeg_is_decoded_small_and_keeps_its_displayed_size():
    stored = Image.new("RGB", (4000, 3000), (200, 30, 30))  # stored landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed turned by 90 degrees: portrait 3000x4000
    data = _encoded(stored, "JPEG", exif=exif.tobytes(), quality=90)
    decoded = decode_upload(data, max_pixels=25_000_000, input_size=NANO_INPUT)
    assert decoded.original_size == (3000, 4000)
    new_h, new_w = resized_size(3000, 4000, NANO_INPUT.min_size, NANO_INPUT.max_size)
    assert decoded.pixels.size == (new_w, new_h) == (320, 426)
    colour = np.asarray(decoded.pixels)[200, 160].astype(int)
    assert np.abs(colour - [200, 30, 30]).max() <= 6  # JPEG rounding only


def test_boxes_are_scaled_back_to_the_uploaded_pixels():
    decoded = DecodedImage(Image.new("RGB", (480, 320)), original_size=(6000, 4000))
    result = {"width": 480, "height": 320, "caption": "star.", "phrases": ["star"],
              "detections": [{"bbox_xyxy": [48.0, 32.0, 96.0, 64.04], "score": 0.9, "phrase": "star",
                              "phrase_index": 0}]}
    scaled = decoded.to_original(result)
    assert (scaled["width"], scaled["height"]) == (6000, 4000)
    assert scaled["detections"][0]["bbox_xyxy"] == [600.0, 400.0, 1200.0, 800.5]
    assert scaled["detections"][0]["score"] == 0.9 and result["detections"][0]["bbox_xyxy"][0] == 48.0


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="malloc_trim is glibc's")
def test_release_memory_trims_glibc_heaps():
    assert release_memory() is True


def test_memory_is_released_once_idle_and_not_while_busy(monkeypatch):
    import glip.serving.memory as memory_module

    released: list[int] = []
    monkeypatch.setattr(memory_module, "release_memory", lambda: released.append(1) or True)
    busy = [False]

    async def scenario():
        memory = IdleMemoryRelease(busy=lambda: busy[0], delay_s=0.02)
        memory.enter()
        memory.enter()
        memory.leave()
        await asyncio.sleep(0.1)
        assert released == [], "released while a request was still in flight"
        busy[0] = True  # e.g. a stopped model call still finishing
        memory.leave()
        await asyncio.sleep(0.1)
        assert released == [], "released while the model was busy"
        busy[0] = False
        for _ in range(100):
            if memory.releases:
                break
            await asyncio.sleep(0.01)
        return memory.releases

    assert asyncio.run(scenario()) == 1 and released == [1]
