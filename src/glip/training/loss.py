"""The GLIP training loss: token-level alignment focal loss, GIoU box loss, centerness BCE, and
optionally the phrase cross-entropy (ours, not in GLIP; see `phrase_cross_entropy`).

Terms come back unweighted and named; the training loop applies the weights (official: box 2.0).
Normalisation follows the official code: the token and centerness terms are divided by the number
of positive anchors, the box term by the sum of the centerness targets, each averaged over
processes (summed across processes, divided by the world size) when training is distributed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

from glip.distributed import average_across_processes
from glip.modeling.box_coder import BoxCoder
from glip.modeling.glip import GLIPOutput
from glip.training.assigner import atss_assign

DEFAULT_WEIGHTS = {"token": 1.0, "box": 2.0, "centerness": 1.0}


@dataclass
class LossConfig:
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    atss_top_k: int = 9
    phrase_ce: bool = False  # also return the "phrase_ce" term (`phrase_cross_entropy`)


def phrase_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the prompt's tokens of each positive anchor, summed over anchors.

    The focal term scores every token on its own, so an anchor may score "hexagon" and "circle"
    alike and pay little for it; this term is a softmax over the anchor's tokens whose target is
    its phrase's tokens, each 1 / (phrase length): the anchor pays for every other token that scores
    near its phrase. Ours, not in GLIP or GLIPv2 (GLIPv2's L_inter is the same cross-entropy on
    separate projections; this one acts on the detection scores themselves).

    Args:
        logits: [P, L] token logits of P positive anchors.
        targets: [P, L] their binary token targets (the positive map rows); rows without a token
            (a phrase the text window cut off) are left out.
        text_mask: [P, L] 1 for the prompt's tokens (padding is not a candidate).

    Returns:
        The summed cross-entropy, a scalar (0 with no row).

    Example:
        >>> logits = torch.tensor([[2.0, 0.0, 0.0]])
        >>> round(float(phrase_cross_entropy(logits, torch.tensor([[1.0, 0.0, 0.0]]), torch.ones(1, 3))), 4)
        0.2395
    """
    counts = targets.sum(dim=1)
    keep = counts > 0
    logits, targets, counts, valid = logits[keep].float(), targets[keep].float(), counts[keep], text_mask[keep] > 0
    log_probs = torch.log_softmax(logits.masked_fill(~valid, float("-inf")), dim=1)  # [P, L]
    picked = torch.where(targets > 0, targets * log_probs, torch.zeros_like(log_probs))
    return -(picked.sum(dim=1) / counts.float()).sum()


def giou_loss(pred_boxes: torch.Tensor, target_boxes: torch.Tensor) -> torch.Tensor:
    """[N, 4], [N, 4] xyxy -> [N] 1 - GIoU (continuous areas, degenerate predictions allowed)."""
    x1, y1 = pred_boxes[:, 0], pred_boxes[:, 1]
    x2 = torch.max(x1, pred_boxes[:, 2])
    y2 = torch.max(y1, pred_boxes[:, 3])
    tx1, ty1, tx2, ty2 = target_boxes.unbind(dim=1)
    pred_area = (x2 - x1) * (y2 - y1)
    target_area = (tx2 - tx1) * (ty2 - ty1)
    inter_w = torch.min(x2, tx2) - torch.max(x1, tx1)
    inter_h = torch.min(y2, ty2) - torch.max(y1, ty1)
    overlap = (inter_w > 0) & (inter_h > 0)
    intersection = torch.where(overlap, inter_w * inter_h, torch.zeros_like(inter_w))
    enclosing = (torch.max(x2, tx2) - torch.min(x1, tx1)) * (torch.max(y2, ty2) - torch.min(y1, ty1)) + 1e-7
    union = pred_area + target_area - intersection + 1e-7
    giou = intersection / union - (enclosing - union) / enclosing
    return 1 - giou


def centerness_targets(target_boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """[N] sqrt(min(l,r)/max(l,r) * min(t,b)/max(t,b)) of the anchor centre inside its box."""
    cx = (anchors[:, 2] + anchors[:, 0]) / 2
    cy = (anchors[:, 3] + anchors[:, 1]) / 2
    left_right = torch.stack([cx - target_boxes[:, 0], target_boxes[:, 2] - cx], dim=1)
    top_bottom = torch.stack([cy - target_boxes[:, 1], target_boxes[:, 3] - cy], dim=1)
    return torch.sqrt((left_right.min(dim=1).values / left_right.max(dim=1).values)
                      * (top_bottom.min(dim=1).values / top_bottom.max(dim=1).values))


class GLIPLoss:
    """Call with the model output, the per-image targets and the text attention mask.

    targets[i]: ``boxes`` [G, 4] xyxy in network-input pixels, ``positive_map`` [G, L] binary token
    rows of each box's phrase. Returns ``{"token", "box", "centerness"}`` (and ``"phrase_ce"`` when
    ``config.phrase_ce``), unweighted.
    """

    def __init__(self, config: LossConfig | None = None, box_coder: BoxCoder | None = None) -> None:
        self.config = config or LossConfig()
        self.box_coder = box_coder or BoxCoder()

    @torch.no_grad()
    def assign(self, anchors: list[torch.Tensor], targets: list[dict]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns token targets [B, A, L], matched boxes [B, A, 4] and the positive mask [B, A]."""
        token_targets, matched_boxes, positives = [], [], []
        for target in targets:
            boxes = target["boxes"].to(anchors[0].dtype)
            assignment = atss_assign(anchors, boxes, self.config.atss_top_k)
            matched = assignment.matched_box.clamp(min=0)
            positive = assignment.positive
            rows = target["positive_map"].to(anchors[0].dtype)
            num_anchors = positive.shape[0]
            if boxes.shape[0]:
                token_targets.append(rows[matched] * positive[:, None])
                matched_boxes.append(boxes[matched])
            else:
                token_targets.append(rows.new_zeros((num_anchors, rows.shape[1])))
                matched_boxes.append(boxes.new_zeros((num_anchors, 4)))
            positives.append(positive)
        return torch.stack(token_targets), torch.stack(matched_boxes), torch.stack(positives)

    def __call__(self, output: GLIPOutput, targets: list[dict], text_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        head = output.head
        anchors = torch.cat(output.anchors)  # [A, 4]
        token_targets, matched_boxes, positive = self.assign(output.anchors, targets)
        batch = positive.shape[0]

        logits = torch.cat(head.token_logits, dim=1)  # [B, A, L]
        deltas = torch.cat([r.flatten(2).transpose(1, 2) for r in head.box_regression], dim=1)  # [B, A, 4]
        centerness = torch.cat([c.flatten(1) for c in head.centerness], dim=1)  # [B, A]

        num_positive = average_across_processes(float(positive.sum()))
        normaliser = max(num_positive, 1.0)
        token_mask = (text_mask > 0)[:, None, :].expand_as(logits)  # text tokens only
        token = sigmoid_focal_loss(logits[token_mask], token_targets[token_mask].to(logits.dtype),
                                   alpha=self.config.focal_alpha, gamma=self.config.focal_gamma,
                                   reduction="sum") / normaliser

        positive_anchors = anchors[None].expand(batch, -1, -1)[positive]  # [P, 4]
        target_boxes = matched_boxes[positive]
        if positive.any():
            predicted = self.box_coder.decode(deltas[positive], positive_anchors)
            # Targets go through encode/decode like the official code (same rounding).
            targets_decoded = self.box_coder.decode(self.box_coder.encode(target_boxes, positive_anchors),
                                                    positive_anchors)
            centre_targets = centerness_targets(targets_decoded, positive_anchors)
            centre_sum = average_across_processes(float(centre_targets.sum()))
            box = (giou_loss(predicted, targets_decoded) * centre_targets).sum() / centre_sum
            centre = F.binary_cross_entropy_with_logits(centerness[positive], centre_targets,
                                                        reduction="sum") / normaliser
        else:
            average_across_processes(0.0)  # keep collective calls in step across processes
            box = deltas.sum() * 0.0
            centre = centerness.sum() * 0.0
        terms = {"token": token, "box": box, "centerness": centre}
        if self.config.phrase_ce:
            terms["phrase_ce"] = phrase_cross_entropy(logits[positive], token_targets[positive],
                                                      token_mask[positive]) / normaliser
        return terms
