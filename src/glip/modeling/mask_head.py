"""GLIPv2's language-aware instance segmentation: a RoI mask head whose classifier is a phrase.

A box's mask is scored against the phrase that names it, not against a fixed class list: RoIAlign
on the fused visual features (the dense head's tower output, which has already attended to the
prompt), a small Mask R-CNN conv head up to ``resolution`` x ``resolution`` pixel features of the
text width D, then for every pixel the cosine of its feature with the box's phrase feature (the
mean of the fused token features over the phrase's tokens), times a learnable scale, plus a
learnable bias.

What is official and what is ours: the official v1 code (`VLMaskRCNNC4Predictor`, GLIPv2 itself
was never released) takes the dot product of every pixel feature with the normalised token
features and trains BCE on the mean over the matched phrase's positive tokens. Ours averages the
token features first (one phrase feature per box, so inference needs one dot product per box),
L2-normalises the pixel features too (a cosine), and scales the cosine by a learnable scalar
(initialised to 10, stored as a log) plus a learnable bias (0). The conv head is Mask R-CNN's (4
conv3x3 + ReLU, a 2x transposed conv), followed by our 1x1 projection to the text width; RoIs are
pooled from the fused pyramid's finest levels (P3..P5) by FPN's size rule.

Example:
    >>> from glip.config import MaskHeadConfig
    >>> head = LanguageAwareMaskHead(MaskHeadConfig(enabled=True, channels=16), visual_dim=32, text_dim=24)
    >>> visual = [torch.zeros(1, 32, 32, 32), torch.zeros(1, 32, 16, 16), torch.zeros(1, 32, 8, 8)]
    >>> boxes = [torch.tensor([[10.0, 20.0, 90.0, 120.0]])]
    >>> head(visual, boxes, [torch.ones(1, 24)], image_size=(256, 256)).shape
    torch.Size([1, 28, 28])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align

from glip.config import MaskHeadConfig

# FPN's level rule (Lin et al., eq. 1): a 224-pixel box belongs to P4.
CANONICAL_SCALE = 224.0
CANONICAL_LEVEL = 4


class LanguageAwareMaskHead(nn.Module):
    """Mask logits [sum N_i, R, R] for boxes and their phrase features.

    Args:
        config: the model's ``mask_head`` section.
        visual_dim: width of the fused visual features (``head.channels``).
        text_dim: width of the fused text features (``text.hidden_size``).
    """

    def __init__(self, config: MaskHeadConfig, visual_dim: int, text_dim: int) -> None:
        super().__init__()
        if config.resolution != 2 * config.roi_size:
            raise ValueError(f"mask_head.resolution must be 2 x mask_head.roi_size (one 2x transposed conv), "
                             f"got resolution {config.resolution} and roi_size {config.roi_size}")
        if config.num_levels < 1 or config.channels < 1 or config.num_convs < 0 or config.sampling_ratio < 1:
            raise ValueError("mask_head.num_levels, channels and sampling_ratio must be >= 1, num_convs >= 0")
        self.config = config
        layers: list[nn.Module] = []
        width = visual_dim
        for _ in range(config.num_convs):
            layers += [nn.Conv2d(width, config.channels, 3, padding=1), nn.ReLU(inplace=True)]
            width = config.channels
        self.convs = nn.Sequential(*layers)
        self.upsample = nn.ConvTranspose2d(width, config.channels, 2, stride=2)
        self.projection = nn.Conv2d(config.channels, text_dim, 1)
        for module in self.modules():  # Mask R-CNN's init
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
        # Cosine similarity lies in [-1, 1]: a scale lets the logits reach confident values.
        self.log_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.bias = nn.Parameter(torch.zeros(()))

    def pool(self, visual: list[torch.Tensor], boxes: list[torch.Tensor],
             image_size: tuple[int, int]) -> torch.Tensor:
        """RoIAlign each box on its level: [sum N_i, C, roi_size, roi_size]."""
        levels = visual[: self.config.num_levels]
        # Strides from the feature sizes (powers of two; P6/P7 sizes are rounded up by their convs).
        log_strides = [round(math.log2(image_size[0] / level.shape[-2])) for level in levels]
        rois = torch.cat([torch.cat([torch.full_like(b[:, :1], i), b], dim=1)
                          for i, b in enumerate(boxes)]).to(levels[0].dtype)  # [K, 5] (image, x0, y0, x1, y1)
        size = self.config.roi_size
        pooled = levels[0].new_zeros(rois.shape[0], levels[0].shape[1], size, size)
        sides = ((rois[:, 3] - rois[:, 1]).clamp(min=0) * (rois[:, 4] - rois[:, 2]).clamp(min=0)).sqrt()
        target = torch.floor(CANONICAL_LEVEL + torch.log2(sides / CANONICAL_SCALE + 1e-6))
        target = target.clamp(min=log_strides[0], max=log_strides[-1])
        for level, log_stride in zip(levels, log_strides):
            chosen = (target == log_stride).nonzero().squeeze(1)
            if chosen.numel():
                pooled[chosen] = roi_align(level, rois[chosen], size, spatial_scale=2.0 ** -log_stride,
                                           sampling_ratio=self.config.sampling_ratio,
                                           aligned=True).to(pooled.dtype)  # autocast runs roi_align in float32
        return pooled

    def pixel_features(self, pooled: torch.Tensor) -> torch.Tensor:
        """[K, C, roi_size, roi_size] -> [K, D, R, R], unit length along D."""
        x = F.relu(self.upsample(self.convs(pooled)))  # [K, channels, R, R]
        return F.normalize(self.projection(x), p=2, dim=1)

    def forward(self, visual: list[torch.Tensor], boxes: list[torch.Tensor], phrase_features: list[torch.Tensor],
                image_size: tuple[int, int]) -> torch.Tensor:
        """Mask logits inside each box.

        Args:
            visual: the fused tower features (``HeadOutput.visual``), per level [B, C, H_l, W_l], finest first.
            boxes: per image [N_i, 4] xyxy in the (padded) network input's pixels.
            phrase_features: per image [N_i, D], each box's phrase (see ``phrase_features``).
            image_size: the padded network input's (H, W).

        Returns:
            [sum N_i, R, R] logits; the probability that the pixel of the box's R x R grid belongs to
            the object named by the phrase is their sigmoid.
        """
        if len(boxes) != len(phrase_features) or len(boxes) != visual[0].shape[0]:
            raise ValueError(f"mask head: {visual[0].shape[0]} images, {len(boxes)} box sets and "
                             f"{len(phrase_features)} phrase sets; pass one of each per image")
        for b, p in zip(boxes, phrase_features):
            if b.shape[0] != p.shape[0]:
                raise ValueError(f"mask head: {b.shape[0]} boxes but {p.shape[0]} phrase features in an image")
        pixels = self.pixel_features(self.pool(visual, boxes, image_size))  # [K, D, R, R]
        phrases = F.normalize(torch.cat(phrase_features), p=2, dim=-1).to(pixels.dtype)  # [K, D]
        cosine = torch.einsum("kdhw,kd->khw", pixels, phrases)  # [K, R, R]
        return cosine * self.log_scale.exp() + self.bias


def phrase_features(text: torch.Tensor, token_sets: list[list[list[int]]]) -> list[torch.Tensor]:
    """Each box's phrase feature: the mean of the token features over the phrase's tokens.

    Args:
        text: [B, L, D] fused token features (``HeadOutput.text``).
        token_sets: per image, per box, the token indices of its phrase (non-empty, < L).

    Returns:
        per image [N_i, D].
    """
    if len(token_sets) != text.shape[0]:
        raise ValueError(f"phrase_features: {text.shape[0]} images of text but {len(token_sets)} token sets")
    length = text.shape[1]
    out = []
    for b, sets in enumerate(token_sets):
        weights = text.new_zeros(len(sets), length)  # [N_i, L], each row 1/|tokens| on its tokens
        for row, tokens in enumerate(sets):
            if not tokens or min(tokens) < 0 or max(tokens) >= length:
                raise ValueError(f"phrase_features: box {row} of image {b} has token indices {list(tokens)}; "
                                 f"each box needs at least one token index in [0, {length})")
            weights[row, list(tokens)] = 1.0 / len(set(tokens))
        out.append(weights @ text[b])  # [N_i, D]
    return out


def paste_masks(logits: torch.Tensor, boxes: torch.Tensor, height: int, width: int,
                threshold: float = 0.5) -> torch.Tensor:
    """Paste each box's R x R mask logits into the image: bool [N, height, width].

    A box covers the pixels from round(x0) to round(x1) (exclusive), likewise in y, i.e. the pixels
    whose centres lie inside it; a box of positive size smaller than that covers the pixel of its
    centre. Its sigmoid probabilities are resized bilinearly (as ``F.interpolate``,
    align_corners=False) to that extent, only the part inside the image is computed, and pixels with
    probability > ``threshold`` are set. Boxes outside the image, of zero or negative size, or with
    non-finite coordinates give empty masks. Memory: the answer plus one box's visible region.

    Args:
        logits: [N, R, R] mask logits (``LanguageAwareMaskHead`` output).
        boxes: [N, 4] xyxy in the original image's pixels.
        height, width: the original image's size.
        threshold: on the probability.
    """
    if logits.dim() != 3 or boxes.shape != (logits.shape[0], 4):
        raise ValueError(f"paste_masks: logits must be [N, R, R] and boxes [N, 4], got {tuple(logits.shape)} "
                         f"and {tuple(boxes.shape)}")
    masks = torch.zeros(logits.shape[0], height, width, dtype=torch.bool, device=logits.device)
    for i, box in enumerate(boxes.detach().double().cpu().tolist()):
        extent = _pixel_extent(box)
        if extent is None:
            continue
        x0, y0, x1, y1 = extent  # the box's pixels, exclusive ends
        vx0, vy0, vx1, vy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
        if vx1 <= vx0 or vy1 <= vy0:
            continue
        # grid_sample at the visible pixels' centres, in the box grid's normalised frame (align_corners=False).
        gx = (torch.arange(vx0, vx1, device=logits.device, dtype=torch.float32) - x0 + 0.5) / (x1 - x0) * 2 - 1
        gy = (torch.arange(vy0, vy1, device=logits.device, dtype=torch.float32) - y0 + 0.5) / (y1 - y0) * 2 - 1
        grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)[None]  # [1, h, w, 2] as (x, y)
        probability = logits[i].float().sigmoid()[None, None]  # [1, 1, R, R]
        sampled = F.grid_sample(probability, grid, mode="bilinear", padding_mode="border", align_corners=False)
        masks[i, vy0:vy1, vx0:vx1] = sampled[0, 0] > threshold
    return masks


def _pixel_extent(box: list[float]) -> tuple[int, int, int, int] | None:
    """xyxy -> integer (x0, y0, x1, y1) pixel extent with exclusive ends, or None for an empty box."""
    x0, y0, x1, y1 = box
    if not all(math.isfinite(v) for v in box) or x1 <= x0 or y1 <= y0:
        return None
    ends = []
    for low, high in ((x0, x1), (y0, y1)):
        a, b = math.floor(low + 0.5), math.floor(high + 0.5)  # round half up (not to even)
        if b <= a:  # smaller than a pixel: the pixel of its centre
            a = math.floor((low + high) / 2)
            b = a + 1
        ends.append((a, b))
    (ax, bx), (ay, by) = ends
    return ax, ay, bx, by
