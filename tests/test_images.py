"""Tests of glip.images: loading, the official test transform (golden values), and batching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from glip.images import (
    ImageBatch,
    ImageError,
    PreprocessConfig,
    batch_images,
    load_image,
    prepare_images,
    preprocess,
    resized_size,
)
from support import require_reference


# (model folder, resized (h, w), padded shape of the network input)
REFERENCE_CASES = [
    ("glip_t", (800, 800), (1, 3, 800, 800)),
    ("glip_t_a", (800, 1202), (1, 3, 800, 1216)),
    ("glip_l", (800, 1199), (1, 3, 800, 1216)),
]


@pytest.mark.parametrize("model, resized, padded", REFERENCE_CASES)
def test_network_input_matches_official(
    model: str, resized: tuple[int, int], padded: tuple[int, ...]
) -> None:
    reference = np.load(require_reference(model, "case_a", "inference.npz"))
    image = load_image(require_reference(model, "case_a", "image.png"))
    tensor = preprocess(image, PreprocessConfig())
    assert tuple(tensor.shape[1:]) == resized
    batch = batch_images([tensor], [(image.height, image.width)], size_divisibility=32)
    assert tuple(batch.tensor.shape) == tuple(reference["image_tensor__shape"]) == padded
    assert batch.image_sizes == [resized]
    flat = batch.tensor.numpy().reshape(-1)  # C-contiguous [B*3*H_pad*W_pad]
    sampled = flat[reference["image_tensor__idx"]]
    np.testing.assert_allclose(sampled, reference["image_tensor__val"], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(sampled, reference["image_tensor__val"])  # in fact bit-identical
    np.testing.assert_allclose(flat.mean(), reference["image_tensor__mean"], atol=1e-5)


# ---------------------------------------------------------------- resized_size


@pytest.mark.parametrize(
    "width, height, max_size, expected",
    [
        (512, 512, 1333, (800, 800)),
        (451, 300, 1333, (800, 1202)),
        (640, 427, 1333, (800, 1199)),
        (300, 451, 1333, (1202, 800)),
        (800, 600, 1333, (800, 1066)),  # long side int(800 * 800 / 600) = 1066 (truncated)
        (1000, 300, 1333, (400, 1333)),  # capped: short side round(1333 * 300 / 1000) = 400
        (300, 1000, 1333, (1333, 400)),
        (1000, 300, None, (800, 2666)),  # no cap: what the official demo does
        (1066, 800, 1333, (800, 1066)),  # already at the target: unchanged
    ],
)
def test_resized_size(
    width: int, height: int, max_size: int | None, expected: tuple[int, int]
) -> None:
    assert resized_size(width, height, 800, max_size) == expected


def test_preprocess_resizes_by_config() -> None:
    image = Image.new("RGB", (1000, 300), (10, 20, 30))
    assert preprocess(image, PreprocessConfig()).shape == (3, 400, 1333)
    assert preprocess(image, PreprocessConfig(max_size=None)).shape == (3, 800, 2666)


def test_preprocess_channel_order_and_normalisation() -> None:
    image = Image.new("RGB", (8, 8), (10, 20, 30))  # R, G, B
    config = PreprocessConfig(min_size=8)
    tensor = preprocess(image, config)
    expected_bgr = [(30 - 103.530) / 57.375, (20 - 116.280) / 57.120, (10 - 123.675) / 58.395]
    for channel, value in enumerate(expected_bgr):
        torch.testing.assert_close(tensor[channel], torch.full((8, 8), value), rtol=0, atol=1e-6)


def test_preprocess_rejects_non_rgb() -> None:
    with pytest.raises(ImageError, match="load_image"):
        preprocess(Image.new("L", (4, 4)))


# ---------------------------------------------------------------- loading


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # Stored 40 wide x 20 tall with a red left half; orientation 6 = rotate 90 degrees clockwise.
    array = np.zeros((20, 40, 3), dtype=np.uint8)
    array[:, :20] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(array).save(path, exif=exif, quality=95)
    image = load_image(path)
    assert image.size == (20, 40)  # (w, h) swapped
    pixels = np.asarray(image).astype(int)
    assert pixels[5, 10, 0] > 200 and pixels[5, 10, 2] < 60  # red now on top
    assert pixels[35, 10, 0] < 60  # black at the bottom


@pytest.mark.parametrize("mode", ["L", "1", "P", "LA", "RGBA", "I;16"])
def test_modes_become_rgb(tmp_path: Path, mode: str) -> None:
    path = tmp_path / f"mode_{mode.replace(';', '_')}.png"
    Image.new("RGB", (6, 4), (200, 100, 50)).convert(mode).save(path)
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (6, 4)


def test_grayscale_replicated() -> None:
    image = load_image(Image.new("L", (3, 2), 77))
    assert np.array_equal(np.asarray(image), np.full((2, 3, 3), 77, dtype=np.uint8))


def test_sixteen_bit_keeps_high_byte() -> None:
    array = np.array([[0, 256, 65535]], dtype=np.uint16)
    image = load_image(Image.fromarray(array))
    assert np.asarray(image)[0, :, 0].tolist() == [0, 1, 255]


def test_rgba_composited_on_white() -> None:
    rgba = np.zeros((1, 3, 4), dtype=np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)  # opaque: unchanged
    rgba[0, 1] = (10, 20, 30, 0)  # transparent: white
    rgba[0, 2] = (0, 0, 0, 128)  # half: mid grey
    for source in (rgba, Image.fromarray(rgba, mode="RGBA")):
        pixels = np.asarray(load_image(source))
        assert pixels[0, 0].tolist() == [10, 20, 30]
        assert pixels[0, 1].tolist() == [255, 255, 255]
        assert pixels[0, 2].tolist() == [127, 127, 127]


def test_numpy_inputs() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert np.array_equal(np.asarray(load_image(rgb)), rgb)
    assert np.array_equal(np.asarray(load_image(rgb[:, :, ::-1])), rgb[:, :, ::-1])  # strided view
    assert np.array_equal(np.asarray(load_image(rgb.astype(np.float32) / 255)), rgb)
    gray = np.asarray(load_image(np.full((5, 7), 0.5)))
    assert gray.shape == (5, 7, 3) and (gray == 128).all()


@pytest.mark.parametrize(
    "array, problem",
    [
        (np.zeros((3, 5, 7), dtype=np.uint8), "shape"),
        (np.zeros((2, 5, 7, 3), dtype=np.uint8), "shape"),
        (np.zeros((5, 7, 3), dtype=np.uint16), "dtype"),
        (np.zeros((5, 7, 3), dtype=np.int64), "dtype"),
        (np.full((5, 7, 3), 2.0), r"\[0, 1\]"),
        (np.zeros((0, 7, 3), dtype=np.uint8), "zero-size"),
    ],
)
def test_bad_arrays(array: np.ndarray, problem: str) -> None:
    with pytest.raises(ImageError, match=problem):
        load_image(array, name="image #3")
    with pytest.raises(ImageError, match="image #3"):
        load_image(array, name="image #3")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.jpg"
    with pytest.raises(ImageError, match="does not exist") as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty file \(0 bytes\)") as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_text_file_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("these are not pixels\n")
    with pytest.raises(ImageError, match="not an image") as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_corrupt_and_truncated_files(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(good)
    data = good.read_bytes()
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(bytes(range(256)) * 4)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(data[: len(data) // 2])
    for path in (garbage, truncated):
        with pytest.raises(ImageError, match="corrupt") as info:
            load_image(path)
        assert str(path) in str(info.value)
        assert "\n" not in str(info.value)


def test_prepare_images_names_failing_input(tmp_path: Path) -> None:
    good = np.zeros((10, 10, 3), dtype=np.uint8)
    with pytest.raises(ImageError, match=r"image #1 \(.*missing\.png\): file does not exist"):
        prepare_images([good, tmp_path / "missing.png"])
    with pytest.raises(ImageError, match="image #2"):
        prepare_images([good, good, np.zeros((10, 10, 5), dtype=np.uint8)])


# ---------------------------------------------------------------- batching


def test_batch_padding_and_sizes() -> None:
    first = torch.ones(3, 50, 70)
    second = torch.full((3, 65, 33), 2.0)
    batch = batch_images([first, second], [(25, 35), (130, 66)], size_divisibility=32)
    assert isinstance(batch, ImageBatch)
    assert batch.tensor.shape == (2, 3, 96, 96)
    assert batch.image_sizes == [(50, 70), (65, 33)]
    assert batch.original_sizes == [(25, 35), (130, 66)]
    assert (batch.tensor[0, :, :50, :70] == 1).all() and batch.tensor[0, :, 50:].abs().sum() == 0
    assert batch.tensor[0, :, :, 70:].abs().sum() == 0
    assert (batch.tensor[1, :, :65, :33] == 2).all() and batch.tensor[1, :, :, 33:].abs().sum() == 0
    unpadded = batch_images([first, second], [(1, 1), (1, 1)], size_divisibility=0)
    assert unpadded.tensor.shape == (2, 3, 65, 70)


def test_batch_errors() -> None:
    with pytest.raises(ValueError, match="at least one"):
        batch_images([], [])
    with pytest.raises(ValueError, match="original sizes"):
        batch_images([torch.zeros(3, 4, 4)], [])


def test_prepare_images_end_to_end() -> None:
    sources = [
        np.zeros((300, 451, 3), dtype=np.uint8),
        Image.new("L", (512, 512), 128),
    ]
    batch = prepare_images(sources, PreprocessConfig())
    assert batch.tensor.shape == (2, 3, 800, 1216)
    assert batch.image_sizes == [(800, 1202), (800, 800)]
    assert batch.original_sizes == [(300, 451), (512, 512)]
    assert batch.tensor.dtype == torch.float32


# ---------------------------------------------------------------- pixel limit


def _png_claiming_size(path: Path, width: int, height: int) -> Path:
    """A small PNG whose header claims ``width`` x ``height`` (its pixel data does not match)."""
    import struct
    import zlib

    Image.new("RGB", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    header = b"IHDR" + struct.pack(">II", width, height) + bytes(data[24:29])  # PNG header chunk
    data[12:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(header))
    path.write_bytes(bytes(data))
    return path


def test_pixel_limit_is_read_from_the_header_and_names_the_file(tmp_path: Path) -> None:
    from glip.images import DEFAULT_MAX_MEGAPIXELS

    huge = _png_claiming_size(tmp_path / "huge.png", 12_000, 12_000)  # 144 megapixels, 100-odd bytes
    with pytest.raises(ImageError, match=r"12000x12000 is 144\.0 megapixels, over the limit of 25") as info:
        load_image(huge, max_pixels=DEFAULT_MAX_MEGAPIXELS * 1_000_000)
    assert str(huge) in str(info.value)
    small = tmp_path / "small.png"
    Image.new("RGB", (100, 60)).save(small)
    with pytest.raises(ImageError, match=r"small\.png: 100x60 is 0\.0 megapixels, over the limit of 0\.005"):
        load_image(small, max_pixels=5_000)
    with pytest.raises(ImageError, match="over the limit"):
        load_image(Image.new("RGB", (100, 60)), max_pixels=5_000)
    with pytest.raises(ImageError, match=r"image #0 \(.*small\.png\): 100x60"):
        prepare_images([small], max_pixels=5_000)
    assert load_image(small, max_pixels=6_000).size == (100, 60)


def test_no_pil_decompression_bomb_warning(tmp_path: Path) -> None:
    import warnings

    over_warning = _png_claiming_size(tmp_path / "big.png", 12_000, 12_000)  # PIL warns above ~89 MP
    over_error = _png_claiming_size(tmp_path / "bomb.png", 20_000, 20_000)  # PIL refuses above ~179 MP
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageError, match=r"big\.png: not an image or corrupt"):
            load_image(over_warning)  # no limit of ours: PIL decodes, and finds no such pixel data
        with pytest.raises(ImageError, match=r"bomb\.png: over PIL's decompression-bomb limit"):
            load_image(over_error)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


def test_loading_images_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = ("import sys; import numpy as np; from glip.images import load_image; "
            "load_image(np.zeros((4, 4, 3), dtype=np.uint8)); print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
