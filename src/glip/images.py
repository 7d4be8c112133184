"""Image loading and the official GLIP test-time preprocessing.

The network input must match the official implementation to the bit, so `preprocess` reproduces
the official demo transform step by step (maskrcnn-benchmark / GLIP ``GLIPDemo.build_transform``):

1. PIL bilinear resize so that the shorter side becomes ``min_size`` (capped by ``max_size`` on the
   longer side), exactly what torchvision's ``Resize`` does on a PIL image;
2. ``ToTensor`` (uint8 -> float32 / 255) followed by ``x * 255`` (the ``TO_BGR255`` step), both in
   float32, because ``v / 255 * 255`` is not always ``v`` in float32;
3. ``Normalize`` with the Caffe-style BGR mean/std on the 0..255 scale;
4. ``to_image_list``: zero padding at the bottom/right up to multiples of ``size_divisibility``.

The official demo receives a BGR array (``cv2.imread``) and never swaps channels; here images are
loaded as RGB and reversed to BGR after resizing, which gives identical values because the bilinear
resize treats every channel independently.

Loading a picture needs PIL and numpy only; torch is imported by the functions that make tensors,
so that the command line can check its inputs (and refuse them) before loading the model stack.

Example:
    >>> batch = prepare_images(["cat.jpg"], PreprocessConfig())  # doctest: +SKIP
    >>> batch.tensor.shape  # doctest: +SKIP
    torch.Size([1, 3, 800, 1216])
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

ImageSource = Union[str, os.PathLike, Image.Image, np.ndarray]

# Largest picture decoded by default (width x height, in millions of pixels): any camera photo
# fits, and the model shrinks it to its input size anyway. The CLI and the server share it.
DEFAULT_MAX_MEGAPIXELS = 25

# PIL modes that store 16/32-bit integer samples; their values are read on the 16-bit scale.
_WIDE_INTEGER_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")
# PIL modes that carry an alpha channel and are composited on white.
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


class ImageError(ValueError):
    """An input could not be turned into an RGB image; the message names the input and the fault."""


@dataclass
class PreprocessConfig:
    """Test-time preprocessing of the official GLIP models (``INPUT.*`` of the official configs).

    Attributes:
        min_size: target length of the shorter side after resizing (``INPUT.MIN_SIZE_TEST``).
        max_size: cap on the longer side (``INPUT.MAX_SIZE_TEST``); the shorter side shrinks below
            ``min_size`` when the cap would be exceeded. ``None`` disables the cap, which is what
            the official demo (torchvision ``Resize(800)``) does; both agree unless the aspect ratio
            exceeds ``max_size / min_size`` (1.67 with the defaults).
        size_divisibility: the batch is zero-padded to multiples of this (32 = the coarsest Swin
            stride, so every backbone stage has integer sizes); 0 disables padding.
        pixel_mean: per-channel mean on the 0..255 scale, in **BGR** order (Caffe/Detectron values).
        pixel_std: per-channel std on the 0..255 scale, in **BGR** order.
    """

    min_size: int = 800
    max_size: int | None = 1333
    size_divisibility: int = 32
    pixel_mean: tuple[float, float, float] = (103.530, 116.280, 123.675)
    pixel_std: tuple[float, float, float] = (57.375, 57.120, 58.395)

    def __post_init__(self) -> None:
        if self.min_size <= 0:
            raise ValueError(f"PreprocessConfig.min_size must be positive, got {self.min_size}")
        if self.max_size is not None and self.max_size <= 0:
            raise ValueError(
                f"PreprocessConfig.max_size must be positive or None (no cap), got {self.max_size}"
            )
        if self.size_divisibility < 0:
            raise ValueError(
                "PreprocessConfig.size_divisibility must be >= 0 (0 = no padding), "
                f"got {self.size_divisibility}"
            )
        if len(self.pixel_mean) != 3 or len(self.pixel_std) != 3:
            raise ValueError("PreprocessConfig.pixel_mean and pixel_std need 3 values (B, G, R)")
        if any(s <= 0 for s in self.pixel_std):
            raise ValueError(f"PreprocessConfig.pixel_std must be positive, got {self.pixel_std}")


@dataclass
class ImageBatch:
    """A padded batch of preprocessed images (maskrcnn-benchmark's ``ImageList``).

    Attributes:
        tensor: [B, 3, H_pad, W_pad] float32, BGR-normalised, zero-padded at the bottom/right.
        image_sizes: per image, the resized (h, w) before padding: the frame of anchors and boxes.
        original_sizes: per image, the (h, w) of the loaded picture before resizing: detections are
            rescaled to it.
    """

    tensor: torch.Tensor
    image_sizes: list[tuple[int, int]]
    original_sizes: list[tuple[int, int]]

    def to(self, device: torch.device | str) -> "ImageBatch":
        """Return the batch with its tensor moved to ``device`` (sizes are plain Python ints)."""
        return ImageBatch(self.tensor.to(device), list(self.image_sizes), list(self.original_sizes))


def _describe(source: object, name: str | None) -> str:
    """Label used in error messages: the caller's name, else the path, else the input's type."""
    if name is not None:
        return name
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return f"<{type(source).__name__}>"


def _check_pixels(size: tuple[int, int], max_pixels: int | None, label: str) -> None:
    """Refuse a picture of more than ``max_pixels`` pixels (None: no limit of ours)."""
    width, height = size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(
            f"{label}: {width}x{height} is {width * height / 1e6:.1f} megapixels, over the limit of "
            f"{max_pixels / 1e6:g}; downscale the image or raise the limit "
            "(--max-megapixels on the command line, max_pixels= in Python)"
        )


def _open_path(path: Path, label: str, max_pixels: int | None) -> Image.Image:
    """Open an image file, check its size from the header, then decode it fully; every failure
    becomes a one-line ImageError."""
    if not path.exists():
        raise ImageError(f"{label}: file does not exist; check the path")
    if path.is_dir():
        raise ImageError(f"{label}: is a directory, not an image file")
    if path.stat().st_size == 0:
        raise ImageError(f"{label}: empty file (0 bytes); re-download or re-export the image")
    try:
        image = Image.open(path)  # reads the header only
    except Image.DecompressionBombError as exc:
        raise ImageError(
            f"{label}: over PIL's decompression-bomb limit of {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} "
            "megapixels; downscale the image"
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageError(
            f"{label}: not an image or corrupt (PIL cannot identify the format)"
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{label}: not an image or corrupt ({exc})") from exc
    try:
        _check_pixels(image.size, max_pixels, label)
        image.load()  # decode now so that truncated files fail here, not deep in preprocessing
    except (OSError, SyntaxError, ValueError) as exc:
        image.close()  # a refused or failed decode leaves the file handle open
        if isinstance(exc, ImageError):
            raise
        raise ImageError(f"{label}: not an image or corrupt ({exc})") from exc
    return image


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """[H, W, 4] uint8 RGBA -> [H, W, 3] uint8 RGB over a white background (rounded)."""
    rgb = rgba[..., :3].astype(np.uint32)
    alpha = rgba[..., 3:4].astype(np.uint32)
    blended = (rgb * alpha + 255 * (255 - alpha) + 127) // 255
    return blended.astype(np.uint8)


def _to_rgb(image: Image.Image, label: str) -> Image.Image:
    """Convert any supported PIL mode to RGB; alpha is composited on white."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _WIDE_INTEGER_MODES:
        # 16-bit samples -> 8 bit by dropping the low byte (PIL's own convert would clip at 255).
        wide = np.asarray(image).astype(np.int64)
        gray = (np.clip(wide, 0, 65535) >> 8).astype(np.uint8)
        return Image.fromarray(np.ascontiguousarray(gray), mode="L").convert("RGB")
    if mode == "F":
        raise ImageError(
            f"{label}: 32-bit float image mode 'F' is not supported; "
            "pass a numpy array scaled to [0, 1] instead"
        )
    has_alpha = mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = np.asarray(image.convert("RGBA"))
        return Image.fromarray(_composite_on_white(rgba), mode="RGB")
    try:
        return image.convert("RGB")
    except (OSError, ValueError) as exc:
        raise ImageError(f"{label}: cannot convert image mode {mode!r} to RGB ({exc})") from exc


def _array_to_image(array: np.ndarray, label: str) -> Image.Image:
    """HxW / HxWx1 (gray), HxWx3 (RGB) or HxWx4 (RGBA), uint8 or float in [0, 1] -> PIL RGB."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise ImageError(
            f"{label}: unsupported array shape {tuple(array.shape)}; expected HxW (gray), "
            "HxWx3 (RGB) or HxWx4 (RGBA), channels last (for CHW use array.transpose(1, 2, 0))"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageError(f"{label}: zero-size image (array shape {tuple(array.shape)})")
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise ImageError(f"{label}: float array contains NaN or inf")
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            raise ImageError(
                f"{label}: float array values must lie in [0, 1], got [{low:.4g}, {high:.4g}]; "
                "divide by 255 or pass uint8"
            )
        array = np.round(array.astype(np.float64) * 255.0).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise ImageError(
            f"{label}: unsupported array dtype {array.dtype}; expected uint8 (0..255) "
            "or float in [0, 1]"
        )
    array = np.ascontiguousarray(array)
    if array.ndim == 2:
        return Image.fromarray(array, mode="L").convert("RGB")
    if array.shape[2] == 4:
        return Image.fromarray(_composite_on_white(array), mode="RGB")
    return Image.fromarray(array, mode="RGB")


def load_image(source: ImageSource, name: str | None = None, max_pixels: int | None = None) -> Image.Image:
    """Load a picture from a path, a PIL image or a numpy array as a fully decoded RGB PIL image.

    A file's (or an unloaded PIL image's) width x height is checked against ``max_pixels`` from its
    header, before decoding; PIL's own decompression-bomb warning is never shown (above twice its
    ``MAX_IMAGE_PIXELS``, about 179 megapixels, PIL refuses to open a file, which becomes an
    ImageError too). Files are decoded completely (truncated files fail here) and their EXIF orientation is applied,
    so the returned size is the displayed size. Grayscale, palette, 1-bit and 16-bit images become
    RGB (16-bit samples keep their high byte). Alpha is composited on a white background: a
    documented choice; the official demo reads files with ``cv2.imread``, which drops alpha, so the
    two agree on opaque pixels only. Numpy arrays are channels-last **RGB(A)** (not OpenCV's BGR),
    uint8 or float in [0, 1] (scaled by 255 and rounded).

    Args:
        source: path, PIL image, or array of shape HxW, HxWx3 or HxWx4.
        name: label for error messages (e.g. ``"image #2"``); defaults to the path or the type.
        max_pixels: largest width x height accepted; None = no limit of ours. The command line and
            the server use ``DEFAULT_MAX_MEGAPIXELS`` (25 million) unless told otherwise.

    Returns:
        A PIL image in mode "RGB".

    Raises:
        ImageError: the input is missing, empty, not an image, corrupt, of zero size, over
            ``max_pixels``, or an array of unsupported shape/dtype. The message names the input.

    Example:
        >>> load_image(np.zeros((4, 6), dtype=np.uint8)).size
        (6, 4)
    """
    label = _describe(source, name)
    if isinstance(source, np.ndarray):
        return _array_to_image(source, label)
    with warnings.catch_warnings():
        # The size is checked here (max_pixels); PIL's DecompressionBombWarning would only repeat it.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return _load_pil(source, label, max_pixels)


def _load_pil(source: ImageSource, label: str, max_pixels: int | None) -> Image.Image:
    """`load_image` for paths and PIL images: open, check the size, decode, orient, convert."""
    if isinstance(source, (str, os.PathLike)):
        image = _open_path(Path(source).expanduser(), label, max_pixels)
    elif isinstance(source, Image.Image):
        image = source
        _check_pixels(image.size, max_pixels, label)
        try:
            image.load()
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageError(f"{label}: not an image or corrupt ({exc})") from exc
    else:
        raise ImageError(
            f"{label}: unsupported input type {type(source).__name__}; "
            "pass a path, a PIL image or a numpy array"
        )
    try:
        image = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, KeyError) as exc:
        raise ImageError(f"{label}: unreadable EXIF orientation ({exc})") from exc
    if image.width == 0 or image.height == 0:
        raise ImageError(f"{label}: zero-size image ({image.width}x{image.height})")
    return _to_rgb(image, label)


def resized_size(
    width: int, height: int, min_size: int = 800, max_size: int | None = 1333
) -> tuple[int, int]:
    """Size after maskrcnn-benchmark's ``Resize(min_size, max_size)``, as (new_h, new_w).

    The shorter side becomes ``min_size`` unless the longer side would then exceed ``max_size``,
    in which case the shorter side becomes ``round(max_size * short / long)``; the longer side is
    truncated (``int``), exactly as in the official code.

    Example:
        >>> resized_size(451, 300)
        (800, 1202)
        >>> resized_size(1000, 300)
        (400, 1333)
    """
    size = min_size
    if max_size is not None:
        short, long = float(min(width, height)), float(max(width, height))
        if long / short * size > max_size:
            size = int(round(max_size * short / long))
    if (width <= height and width == size) or (height <= width and height == size):
        return (height, width)
    if width < height:
        new_w = size
        new_h = int(size * height / width)
    else:
        new_h = size
        new_w = int(size * width / height)
    return (new_h, new_w)


def preprocess(image: Image.Image, config: PreprocessConfig | None = None) -> torch.Tensor:
    """Resize and normalise one RGB image exactly as the official GLIP test transform.

    Args:
        image: RGB PIL image, e.g. from `load_image`.
        config: preprocessing settings; defaults to `PreprocessConfig()`.

    Returns:
        [3, new_h, new_w] float32 tensor in BGR order: ``(v - mean_c) / std_c`` on the 0..255 scale.

    Example:
        >>> preprocess(Image.new("RGB", (512, 512))).shape
        torch.Size([3, 800, 800])
    """
    import torch

    config = config or PreprocessConfig()
    if not isinstance(image, Image.Image) or image.mode != "RGB":
        got = f"mode {image.mode!r}" if isinstance(image, Image.Image) else type(image).__name__
        raise ImageError(f"preprocess expects an RGB PIL image, got {got}; call load_image first")
    new_h, new_w = resized_size(image.width, image.height, config.min_size, config.max_size)
    if (new_w, new_h) != image.size:
        # What torchvision's Resize does on a PIL image (PIL's bilinear filter is antialiased).
        image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    rgb = np.asarray(image, dtype=np.uint8)  # [H, W, 3]
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])  # [H, W, 3]; torch cannot wrap negative strides
    # ToTensor (/255) then TO_BGR255 (*255), both in float32: not an identity for every value.
    x = torch.from_numpy(bgr).permute(2, 0, 1).float().div(255).mul(255)  # [3, H, W]
    mean = torch.tensor(config.pixel_mean, dtype=torch.float32)
    std = torch.tensor(config.pixel_std, dtype=torch.float32)
    return (x - mean[:, None, None]) / std[:, None, None]


def batch_images(
    tensors: Sequence[torch.Tensor],
    original_sizes: Sequence[tuple[int, int]],
    size_divisibility: int = 32,
) -> ImageBatch:
    """Zero-pad images of different sizes into one batch (maskrcnn-benchmark's ``to_image_list``).

    Args:
        tensors: per image a [3, H_i, W_i] tensor from `preprocess`.
        original_sizes: per image the (h, w) before resizing.
        size_divisibility: pad H and W up to multiples of this; 0 pads only to the largest image.

    Returns:
        An `ImageBatch` whose tensor is [B, 3, H_pad, W_pad], padding at the bottom/right.
    """
    if len(tensors) == 0:
        raise ValueError("batch_images needs at least one image tensor, got an empty list")
    if len(original_sizes) != len(tensors):
        raise ValueError(
            f"batch_images got {len(tensors)} tensors but {len(original_sizes)} original sizes; "
            "pass one (h, w) per image"
        )
    for index, tensor in enumerate(tensors):
        if tensor.dim() != 3 or tensor.shape[0] != tensors[0].shape[0]:
            raise ValueError(
                f"batch_images: image #{index} has shape {tuple(tensor.shape)}; "
                f"expected [{tensors[0].shape[0]}, H, W] like image #0"
            )
    channels = tensors[0].shape[0]
    max_h = max(int(t.shape[1]) for t in tensors)
    max_w = max(int(t.shape[2]) for t in tensors)
    if size_divisibility > 0:
        max_h = int(math.ceil(max_h / size_divisibility) * size_divisibility)
        max_w = int(math.ceil(max_w / size_divisibility) * size_divisibility)
    batch = tensors[0].new_zeros((len(tensors), channels, max_h, max_w))  # [B, 3, H_pad, W_pad]
    for slot, tensor in zip(batch, tensors):
        slot[:, : tensor.shape[1], : tensor.shape[2]].copy_(tensor)
    image_sizes = [(int(t.shape[1]), int(t.shape[2])) for t in tensors]
    originals = [(int(h), int(w)) for h, w in original_sizes]
    return ImageBatch(tensor=batch, image_sizes=image_sizes, original_sizes=originals)


def prepare_images(
    sources: Sequence[ImageSource] | ImageSource, config: PreprocessConfig | None = None,
    max_pixels: int | None = None,
) -> ImageBatch:
    """Load, preprocess and batch pictures: the whole input side of the model in one call.

    Args:
        sources: a list of paths / PIL images / arrays (a single one is accepted too).
        config: preprocessing settings; defaults to `PreprocessConfig()`.
        max_pixels: largest width x height of a file accepted (see `load_image`); None = no limit.

    Returns:
        An `ImageBatch` ready for the model.

    Raises:
        ImageError: an input could not be loaded; the message says which one ("image #i (path)").
    """
    config = config or PreprocessConfig()
    if isinstance(sources, (str, os.PathLike, Image.Image, np.ndarray)):
        sources = [sources]
    if len(sources) == 0:
        raise ValueError("prepare_images needs at least one image, got an empty list")
    tensors: list[torch.Tensor] = []
    original_sizes: list[tuple[int, int]] = []
    for index, source in enumerate(sources):
        label = f"image #{index}"
        if isinstance(source, (str, os.PathLike)):
            label = f"{label} ({os.fspath(source)})"
        image = load_image(source, name=label, max_pixels=max_pixels)
        original_sizes.append((image.height, image.width))
        tensors.append(preprocess(image, config))
    logger.debug("prepared %d image(s), resized (h, w): %s", len(tensors),
                 [t.shape[1:] for t in tensors])
    return batch_images(tensors, original_sizes, config.size_divisibility)
