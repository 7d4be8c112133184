"""GLIPv2's inter-image region-word contrastive loss: a hand-computed case, the targets (cross-image
positives only for equal categories, in-image only for grounding data), the draw of positives,
empty batches, and 2 gloo processes x B/2 images equal to 1 process x B images."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from glip.config import PretrainingConfig
from glip.data.collate import GroundingCollator, category_key
from glip.data.sample import GroundingExample, GroundingSample
from glip.modeling.glip import GLIPOutput
from glip.modeling.head import HeadOutput
from glip.modeling.pretraining_heads import InterImageProjections, PretrainingHeads
from glip.training.inter_image_loss import (
    UNLABELLED, RegionsAndTokens, collect_regions_and_tokens, inter_image_loss, inter_image_targets,
    sample_positive_anchors,
)

A, B, NONE = 7, 8, UNLABELLED  # two category keys and "no category"


def _identity_projections(width: int = 2) -> InterImageProjections:
    projections = InterImageProjections(width, width, width)
    with torch.no_grad():
        for layer in (projections.visual, projections.text):
            layer.weight.copy_(torch.eye(width))
            layer.bias.zero_()
    return projections


def _two_images(region_labels: list[int], token_labels: list[int]) -> RegionsAndTokens:
    """Image 0: one region [1, 0] whose box names token 0; tokens [1, 0], [0, 1].
    Image 1: one region [0, 1] whose box names token 0; tokens [0, 1], [1, 0]."""
    return RegionsAndTokens(
        regions=torch.tensor([[1.0, 0.0], [0.0, 1.0]]), region_images=torch.tensor([0, 1]),
        region_labels=torch.tensor(region_labels), region_targets=torch.tensor([[1.0, 0.0], [1.0, 0.0]]),
        tokens=torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]]),
        token_images=torch.tensor([0, 0, 1, 1]), token_positions=torch.tensor([0, 1, 0, 1]),
        token_labels=torch.tensor(token_labels), num_images=2, num_positive=2,
    )


def _targets(parts: RegionsAndTokens) -> torch.Tensor:
    return inter_image_targets(parts.region_images, parts.region_labels, parts.region_targets,
                               parts.token_images, parts.token_positions, parts.token_labels)


def test_hand_computed_loss_of_two_detection_images() -> None:
    # Region 0 (category A) pairs with its own token 0 and with image 1's token 1 (also A);
    # region 1 (category B) with its own token 0 only. Cosines: region 0 -> [1, 0, 0, 1],
    # region 1 -> [0, 1, 1, 0]; temperature 1.
    parts = _two_images([A, B], [A, NONE, B, A])
    torch.testing.assert_close(_targets(parts), torch.tensor([[1.0, 0, 0, 1], [0, 0, 1, 0]]))
    e = math.e
    rows = 2 * (math.log(2 * e + 2) - 1)  # each row: -log(e / (2e + 2)) (region 0: two halves of it)
    columns = 3 * (math.log(e + 1) - 1)  # tokens 0, 2, 3: -log(e / (e + 1)); token 1 has no positive
    expected = (rows + columns) / 2 / 2  # (sum of both) / 2 / two positive anchors
    loss = inter_image_loss(parts, _identity_projections())
    assert abs(loss.item() - expected) < 1e-6


def test_cross_image_pairs_need_equal_categories() -> None:
    parts = _two_images([A, B], [B, A, A, B])
    targets = _targets(parts)
    # In-image entries follow the positive map whatever the token's category; across images only
    # equal categories pair: region 0 (A) with image 1's token 0 (A), region 1 (B) with image 0's token 0 (B).
    torch.testing.assert_close(targets, torch.tensor([[1.0, 0, 1, 0], [1, 0, 1, 0]]))


def test_grounding_images_have_in_image_positives_only() -> None:
    parts = _two_images([NONE, NONE], [NONE, NONE, NONE, NONE])
    torch.testing.assert_close(_targets(parts), torch.tensor([[1.0, 0, 0, 0], [0, 0, 1, 0]]))
    # A labelled region does not pair with unlabelled tokens of another image, nor the reverse.
    mixed = _two_images([A, NONE], [A, NONE, NONE, A])
    torch.testing.assert_close(_targets(mixed), torch.tensor([[1.0, 0, 0, 1], [0, 0, 1, 0]]))


def test_temperature_starts_at_one_and_is_learnt() -> None:
    projections = _identity_projections()
    assert projections.log_temperature.item() == 0.0
    loss = inter_image_loss(_two_images([A, B], [A, NONE, B, A]), projections)
    loss.backward()
    assert projections.log_temperature.grad is not None and projections.log_temperature.grad.abs() > 0


def test_positives_are_capped_by_a_seeded_draw() -> None:
    positive = torch.zeros(50, dtype=torch.bool)
    positive[::2] = True  # 25 positives
    draw = lambda seed: sample_positive_anchors(positive, 10, torch.Generator().manual_seed(seed))  # noqa: E731
    first = draw(0)
    assert first.numel() == 10 and positive[first].all() and (first.diff() > 0).all()
    assert torch.equal(first, draw(0)) and not torch.equal(first, draw(1))
    assert torch.equal(sample_positive_anchors(positive, 100), positive.nonzero().squeeze(1))


def test_detection_targets_carry_category_keys_and_grounding_targets_none() -> None:
    def example(caption, spans, categories):
        sample = GroundingSample(image_path=Path("x.png"), caption=caption, phrase_spans=spans,
                                 boxes=np.array([[1, 2, 10, 12]], dtype=np.float32), box_phrases=[1], image_id=1,
                                 source="test", phrase_category_ids=categories)
        return GroundingExample(image=torch.zeros(3, 32, 32), sample=sample, original_size=(32, 32))

    collate = GroundingCollator(max_length=12)
    detection, other_prompt, grounding = collate([
        example("circle. square.", [[(0, 6)], [(8, 14)]], [1, 2]),
        example("Square. star.", [[(0, 6)], [(8, 12)]], [2, 5]),  # the same category, elsewhere in the prompt
        example("a square and a star", [[(2, 8)], [(15, 19)]], None),
    ]).targets
    assert detection["labels"].tolist() == [category_key("square")]
    # [CLS] circle . square . [SEP]: tokens 1 and 3 name categories.
    assert detection["token_labels"][:6].tolist() == [-1, category_key("circle"), -1, category_key("square"), -1, -1]
    assert other_prompt["token_labels"][1].item() == category_key("square")  # case does not matter
    assert "labels" not in grounding and "token_labels" not in grounding


def _fake_output(visual: list[torch.Tensor], text: torch.Tensor, anchors: list[torch.Tensor]) -> GLIPOutput:
    head = HeadOutput(visual=visual, text=text, box_regression=[], centerness=[], token_logits=[])
    return GLIPOutput(image=None, text=None, head=head, anchors=anchors)


def test_regions_are_the_visual_features_at_the_positive_anchors() -> None:
    # One 4x4 level of 8-pixel anchors; a box on anchor (row 1, col 2) only.
    ys, xs = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    anchors = torch.stack([xs * 8, ys * 8, xs * 8 + 8, ys * 8 + 8], dim=-1).reshape(-1, 4)  # [16, 4]
    visual = torch.randn(1, 3, 4, 4)
    text = torch.randn(1, 5, 6)
    target = {"boxes": torch.tensor([[16.0, 8.0, 24.0, 16.0]]), "positive_map": torch.tensor([[0, 1.0, 1, 0, 0]]),
              "labels": torch.tensor([A]), "token_labels": torch.tensor([-1, A, A, -1, -1])}
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    parts = collect_regions_and_tokens(_fake_output([visual], text, [anchors]), [target], mask)
    assert parts.num_positive == 1
    torch.testing.assert_close(parts.regions, visual[0, :, 1, 2][None])
    torch.testing.assert_close(parts.region_targets, target["positive_map"])
    assert parts.region_labels.tolist() == [A]
    torch.testing.assert_close(parts.tokens, text[0, :4])
    assert parts.token_labels.tolist() == [-1, A, A, -1] and parts.token_positions.tolist() == [0, 1, 2, 3]


def test_a_batch_without_boxes_gives_exactly_zero_and_zero_gradients() -> None:
    anchors = torch.tensor([[0.0, 0.0, 8.0, 8.0], [8.0, 0.0, 16.0, 8.0]])
    visual, text = torch.randn(2, 4, 1, 2), torch.randn(2, 3, 4)
    targets = [{"boxes": torch.zeros(0, 4), "positive_map": torch.zeros(0, 3)} for _ in range(2)]
    projections = InterImageProjections(4, 4, 8)
    parts = collect_regions_and_tokens(_fake_output([visual], text, [anchors]), targets, torch.ones(2, 3))
    loss = inter_image_loss(parts, projections)
    assert loss.item() == 0.0
    loss.backward()
    assert all(p.grad is not None and not p.grad.any() for p in projections.parameters())


# ---------------------------------------------------------------------------------- two processes
def _random_images(count: int) -> list[RegionsAndTokens]:
    """``count`` one-image parts with 0-4 regions, 3-5 valid tokens of 5, mixed categories (images
    2 and 3 are grounding data, without categories)."""
    generator = torch.Generator().manual_seed(0)
    images = []
    for image in range(count):
        regions = [3, 0, 4, 2][image % 4]
        valid = 3 + image % 3
        labelled = image % 4 < 2
        targets = (torch.rand(regions, 5, generator=generator) < 0.4).float()
        targets[:, 1] = 1.0  # every region names at least one valid token
        labels = torch.randint(0, 2, (regions,), generator=generator) if labelled else torch.full((regions,), NONE)
        token_labels = torch.randint(-1, 2, (valid,), generator=generator) if labelled else torch.full((valid,), NONE)
        images.append(RegionsAndTokens(
            regions=torch.randn(regions, 6, generator=generator), region_images=torch.zeros(regions, dtype=torch.long),
            region_labels=labels, region_targets=targets, tokens=torch.randn(valid, 5, generator=generator),
            token_images=torch.zeros(valid, dtype=torch.long), token_positions=torch.arange(valid),
            token_labels=token_labels, num_images=1, num_positive=regions + 1,
        ))
    return images


def _merge(images: list[RegionsAndTokens]) -> RegionsAndTokens:
    """One process's parts from single-image ones (image indices renumbered)."""
    def cat(name: str) -> torch.Tensor:
        return torch.cat([getattr(part, name) for part in images])
    return RegionsAndTokens(
        regions=cat("regions"), region_targets=cat("region_targets"), region_labels=cat("region_labels"),
        region_images=torch.cat([part.region_images + i for i, part in enumerate(images)]),
        tokens=cat("tokens"), token_positions=cat("token_positions"), token_labels=cat("token_labels"),
        token_images=torch.cat([part.token_images + i for i, part in enumerate(images)]),
        num_images=len(images), num_positive=sum(part.num_positive for part in images),
    )


def _loss_and_gradients(parts: RegionsAndTokens) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    projections = InterImageProjections(6, 5, 4)
    with torch.no_grad():
        projections.log_temperature.fill_(-1.0)  # a sharper softmax than at initialisation
    loss = inter_image_loss(parts, projections)
    loss.backward()
    return loss.detach(), {name: p.grad for name, p in projections.named_parameters()}


def _worker(rank: int, world_size: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        images = _random_images(4)
        share = len(images) // world_size
        loss, gradients = _loss_and_gradients(_merge(images[rank * share:(rank + 1) * share]))
        # What DDP does: average the gradients (and the trainer its logged values) over processes.
        for tensor in [loss, *gradients.values()]:
            dist.all_reduce(tensor)
            tensor /= world_size
        if rank == 0:
            torch.save({"loss": loss, "gradients": gradients}, out)
    finally:
        dist.destroy_process_group()


def test_two_processes_with_half_the_images_each_equal_one_process(tmp_path: Path) -> None:
    out = tmp_path / "two.pt"
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    two = torch.load(out)
    loss, gradients = _loss_and_gradients(_merge(_random_images(4)))
    assert loss.item() > 0 and all(g.abs().sum() > 0 for g in gradients.values())
    torch.testing.assert_close(two["loss"], loss, rtol=0, atol=1e-5)
    for name, gradient in gradients.items():
        torch.testing.assert_close(two["gradients"][name], gradient, rtol=0, atol=1e-5, msg=name)


def test_model_heads_start_at_the_configured_temperature() -> None:
    heads = PretrainingHeads(PretrainingConfig(inter_image=True), visual_dim=8, text_dim=6, vocab_size=11)
    assert heads.inter_image.log_temperature.exp().item() == pytest.approx(0.07)
    heads = PretrainingHeads(PretrainingConfig(inter_image=True, inter_image_temperature=0.5), 8, 6, 11)
    assert heads.inter_image.log_temperature.exp().item() == pytest.approx(0.5)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="pretraining.inter_image_temperature must be positive"):
            PretrainingHeads(PretrainingConfig(inter_image=True, inter_image_temperature=bad), 8, 6, 11)
