"""Tests of the GLIP network on the tiny configs (CPU, seconds): shapes, gradients, padding and batch
independence, reuse of image features, odd image sizes, the DyHead offset slice, prompt tuning."""

from __future__ import annotations

import pytest
import torch

from glip.checkpoint import CheckpointError, export_official_state_dict, load_shared_state
from glip.config import get_config
from glip.modeling import GLIP, GLIPOutput
from glip.modeling.dyhead import leading_slice
from glip.prompts import TokenizedPrompt, build_class_prompt, tokenize_prompt

NAMES = ["glip-tiny", "glip-tiny-nofusion"]
HEIGHT, WIDTH = 64, 96
LEVEL_SHAPES = [(8, 12), (4, 6), (2, 3), (1, 2), (1, 1)]  # strides 8..128 on 64x96
ATOL = 1e-5


def _build(name: str, seed: int = 0) -> GLIP:
    """A tiny model whose every path matters: the deformable offsets (zero-initialised) and the text
    bias get random values, so offset slicing and padding mistakes show up in the outputs."""
    torch.manual_seed(seed)
    model = GLIP(get_config(name))
    with torch.no_grad():
        for block in model.head.blocks:
            block.dyconv.offset_mask.weight.normal_(std=0.05)
            block.dyconv.offset_mask.bias.normal_(std=0.5)
        model.head.bias_lang.normal_()
    return model.eval()


@pytest.fixture(scope="module")
def models() -> dict[str, GLIP]:
    return {name: _build(name) for name in NAMES}


@pytest.fixture(scope="module")
def prompts() -> list[TokenizedPrompt]:
    short = tokenize_prompt(build_class_prompt(["person", "rocket"]), max_length=256)
    long = tokenize_prompt(build_class_prompt(["cat", "whiskers", "traffic light", "helmet"]), max_length=256)
    assert short.num_tokens < long.num_tokens  # two different paddings
    return [short, long]


def _images(batch: int = 2, height: int = HEIGHT, width: int = WIDTH, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def _text(*prompts: TokenizedPrompt) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.stack([p.input_ids for p in prompts]), torch.stack([p.attention_mask for p in prompts])


def _run(model: GLIP, images: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> GLIPOutput:
    with torch.no_grad():
        return model(images, ids, mask)


def _assert_item_equal(batched: GLIPOutput, index: int, alone: GLIPOutput, tokens: int | None = None) -> None:
    """Item ``index`` of a batched output equals a batch-of-one output (token logits on the first
    ``tokens`` positions only when given)."""
    head_b, head_a = batched.head, alone.head
    for level in range(len(LEVEL_SHAPES)):
        for name in ("box_regression", "centerness", "visual"):
            torch.testing.assert_close(getattr(head_b, name)[level][index], getattr(head_a, name)[level][0],
                                       atol=ATOL, rtol=0)
        logits_b = head_b.token_logits[level][index]
        logits_a = head_a.token_logits[level][0]
        if tokens is not None:
            logits_b, logits_a = logits_b[:, :tokens], logits_a[:, :tokens]
        torch.testing.assert_close(logits_b, logits_a, atol=ATOL, rtol=0)


# --- shapes and gradients --------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_forward_shapes(name: str, models: dict[str, GLIP], prompts: list[TokenizedPrompt]) -> None:
    model = models[name]
    ids, mask = _text(prompts[0])  # one prompt for the whole batch
    out = _run(model, _images(), ids, mask)
    stage_channels = model.config.swin.stage_channels
    assert [tuple(s.shape) for s in out.image.stages] == [
        (2, c, HEIGHT // stride, WIDTH // stride) for c, stride in zip(stage_channels, (4, 8, 16, 32))]
    channels, length, hidden = model.config.head.channels, 256, model.config.text.hidden_size
    assert [tuple(level.shape) for level in out.image.levels] == [(2, channels, h, w) for h, w in LEVEL_SHAPES]
    head = out.head
    assert [tuple(t.shape) for t in head.visual] == [(2, channels, h, w) for h, w in LEVEL_SHAPES]
    assert [tuple(t.shape) for t in head.box_regression] == [(2, 4, h, w) for h, w in LEVEL_SHAPES]
    assert [tuple(t.shape) for t in head.centerness] == [(2, 1, h, w) for h, w in LEVEL_SHAPES]
    assert [tuple(t.shape) for t in head.token_logits] == [(2, h * w, length) for h, w in LEVEL_SHAPES]
    assert [tuple(a.shape) for a in out.anchors] == [(h * w, 4) for h, w in LEVEL_SHAPES]
    assert tuple(head.text.shape) == (2, length, hidden)
    assert tuple(out.text.hidden.shape) == (2, length, hidden) and tuple(out.text.mask.shape) == (2, length)
    assert all(torch.isfinite(t).all() for t in [*head.token_logits, *head.box_regression, *head.centerness])
    # A batch-of-one prompt is shared by every image: same as giving it once per image.
    twice = _run(model, _images(), *_text(prompts[0], prompts[0]))
    for level in range(len(LEVEL_SHAPES)):
        assert torch.equal(twice.head.token_logits[level], head.token_logits[level])


@pytest.mark.parametrize("name", NAMES)
def test_backward_gives_every_parameter_a_finite_gradient(name: str, prompts: list[TokenizedPrompt]) -> None:
    model = _build(name).train()
    out = model(_images(height=32, width=32), *_text(*prompts))
    head = out.head
    loss = sum(t.mean() for t in [*head.token_logits, *head.box_regression, *head.centerness])
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    not_finite = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    zero = [n for n, p in model.named_parameters() if p.grad is not None and not p.grad.any()]
    assert not missing and not not_finite and not zero


# --- padding and batching --------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_padded_text_batch_equals_each_prompt_alone(name: str, models: dict[str, GLIP],
                                                    prompts: list[TokenizedPrompt]) -> None:
    model = models[name]
    images = _images()
    batched = _run(model, images, *_text(*prompts))
    for index, prompt in enumerate(prompts):
        tokens = prompt.num_tokens
        # Alone and without any padding: the padded positions of the batch had no influence.
        alone = _run(model, images[index:index + 1], prompt.input_ids[None, :tokens],
                     prompt.attention_mask[None, :tokens])
        assert alone.head.token_logits[0].shape[-1] == tokens
        _assert_item_equal(batched, index, alone, tokens)


@pytest.mark.parametrize("name", NAMES)
def test_an_image_gives_the_same_outputs_alone_and_in_a_batch(name: str, models: dict[str, GLIP],
                                                              prompts: list[TokenizedPrompt]) -> None:
    model = models[name]
    ids, mask = _text(prompts[1])
    images = _images(batch=3)
    batched = _run(model, images, ids, mask)
    for index in (0, 2):
        _assert_item_equal(batched, index, _run(model, images[index:index + 1], ids, mask))


@pytest.mark.parametrize("name", NAMES)
def test_reused_image_features_give_the_same_output(name: str, models: dict[str, GLIP],
                                                    prompts: list[TokenizedPrompt]) -> None:
    model = models[name]
    images = _images()
    ids, mask = _text(*prompts)
    with torch.no_grad():
        features = model.encode_images(images)
        reused = model(None, ids, mask, image_features=features)  # images are not looked at
        fresh = model(images, ids, mask)
    assert reused.image is features
    for level in range(len(LEVEL_SHAPES)):
        assert torch.equal(reused.head.token_logits[level], fresh.head.token_logits[level])
        assert torch.equal(reused.head.box_regression[level], fresh.head.box_regression[level])
        assert torch.equal(reused.head.centerness[level], fresh.head.centerness[level])


# --- backbone and head details ---------------------------------------------------------------------


def test_swin_handles_sizes_that_are_not_window_multiples(models: dict[str, GLIP],
                                                          prompts: list[TokenizedPrompt]) -> None:
    model = models["glip-tiny"]
    images = _images(height=100, width=72)  # 25x18 patches; window 7 divides neither
    with torch.no_grad():
        stages = model.backbone(images)
    channels = model.config.swin.stage_channels
    assert [tuple(s.shape) for s in stages] == [(2, channels[0], 25, 18), (2, channels[1], 13, 9),
                                                (2, channels[2], 7, 5), (2, channels[3], 4, 3)]
    assert all(torch.isfinite(s).all() for s in stages)
    with torch.no_grad():
        first_two = model.backbone(images, num_stages=2)  # stops early, same values
    assert len(first_two) == 2 and all(torch.equal(a, b) for a, b in zip(first_two, stages))
    out = _run(model, images, *_text(*prompts))
    shapes = [(13, 9), (7, 5), (4, 3), (2, 2), (1, 1)]
    assert [tuple(t.shape[-2:]) for t in out.head.box_regression] == shapes
    assert [a.shape[0] for a in out.anchors] == [h * w for h, w in shapes]
    assert all(torch.isfinite(t).all() for t in out.head.token_logits)
    # The window padding is per image: the second image is unaffected by the first.
    alone = _run(model, images[1:], *_text(prompts[1]))
    torch.testing.assert_close(out.head.token_logits[0][1], alone.head.token_logits[0][0], atol=ATOL, rtol=0)


def test_leading_slice_reads_the_first_values_of_each_image_buffer() -> None:
    generator = torch.Generator().manual_seed(0)
    offset_mask = torch.randn(2, 27, 5, 7, generator=generator)
    offset = offset_mask[:, :18]  # a non-contiguous view, as in the DyHead block
    height, width = 3, 4
    sliced = leading_slice(offset, height, width)
    expected = offset.reshape(2, -1)[:, : 18 * height * width].view(2, 18, height, width)
    assert sliced.shape == (2, 18, height, width)
    assert torch.equal(sliced, expected)
    # Element by element: value (c, y, x) of the small map is flat entry c*h*w + y*w + x of [18, 5, 7].
    flat = offset[1].contiguous().view(-1)
    for c, y, x in [(0, 0, 0), (0, 2, 3), (1, 0, 0), (5, 1, 2), (17, 2, 3)]:
        assert sliced[1, c, y, x] == flat[c * height * width + y * width + x]
    # It is not a crop: channel 1 starts inside channel 0's rows of the large map.
    assert not torch.equal(sliced, offset[:, :, :height, :width])
    assert torch.equal(leading_slice(offset, 5, 7), offset)


@pytest.mark.parametrize("name", NAMES)
def test_prompt_embedding_zero_changes_nothing_and_nonzero_changes_the_logits(
        name: str, prompts: list[TokenizedPrompt]) -> None:
    model = _build(name)
    images = _images()
    ids, mask = _text(*prompts)
    before = _run(model, images, ids, mask)
    embedding = model.enable_prompt_embedding()
    assert embedding.shape == (1000, model.config.text.hidden_size) and not embedding.any()
    unchanged = _run(model, images, ids, mask)
    for level in range(len(LEVEL_SHAPES)):
        assert torch.equal(unchanged.head.token_logits[level], before.head.token_logits[level])
    with torch.no_grad():
        embedding.normal_(std=0.5)
    changed = _run(model, images, ids, mask)
    assert not torch.allclose(changed.head.token_logits[0], before.head.token_logits[0], atol=1e-3)
    # Prompt tuning: with everything else frozen the gradient reaches the embedding rows in use.
    for parameter in model.parameters():
        parameter.requires_grad_(parameter is embedding)
    out = model(images, ids, mask)
    sum(t.mean() for t in out.head.token_logits).backward()
    assert embedding.grad is not None and embedding.grad[:256].abs().sum() > 0
    assert not embedding.grad[256:].any()


def test_alignment_skip_starts_as_a_no_op_and_then_feeds_only_the_token_logits(
        prompts: list[TokenizedPrompt]) -> None:
    plain = _build("glip-tiny")
    config = get_config("glip-tiny")
    config.head.alignment_skip = True
    skipped = GLIP(config).eval()
    shared = load_shared_state(skipped, plain.state_dict())
    assert sorted(shared.kept) == ["head.text_skip.bias", "head.text_skip.weight", "head.visual_skip.bias", "head.visual_skip.weight"]
    images = _images()
    ids, mask = _text(*prompts)
    before, start = _run(plain, images, ids, mask), _run(skipped, images, ids, mask)
    for level in range(len(LEVEL_SHAPES)):  # zero-initialised: the same model at first
        assert torch.equal(start.head.token_logits[level], before.head.token_logits[level])
    out = skipped(images, ids, mask)
    sum(t.mean() for t in out.head.token_logits).backward()
    assert skipped.head.visual_skip.weight.grad.abs().sum() > 0  # it can learn from zero
    with torch.no_grad():
        skipped.head.visual_skip.weight.normal_(std=0.5)
    after = _run(skipped, images, ids, mask)
    assert not torch.allclose(after.head.token_logits[0], before.head.token_logits[0], atol=1e-3)
    for level in range(len(LEVEL_SHAPES)):  # boxes and centerness come from the tower alone
        assert torch.equal(after.head.box_regression[level], before.head.box_regression[level])
        assert torch.equal(after.head.centerness[level], before.head.centerness[level])
    with pytest.raises(CheckpointError, match="alignment_skip"):
        export_official_state_dict(skipped)
    with torch.no_grad(), pytest.raises(ValueError, match="pass skip_features"):
        skipped.head(out.image.levels, out.text)


def test_texture_skip_extends_an_alignment_skip_model_with_pooled_texture_responses(
        prompts: list[TokenizedPrompt]) -> None:
    config = get_config("glip-tiny")
    config.head.alignment_skip = True
    torch.manual_seed(0)
    skipped = GLIP(config).eval()
    with torch.no_grad():
        skipped.head.visual_skip.weight.normal_(std=0.5)
    config = get_config("glip-tiny")
    config.head.alignment_skip, config.head.texture_skip_channels = True, 16
    textured = GLIP(config).eval()
    shared = load_shared_state(textured, skipped.state_dict())
    texture_names = [f"head.texture_skip.{name}" for name, _ in textured.head.texture_skip.named_parameters()]
    assert sorted(shared.kept) == sorted(texture_names)
    images = _images()
    ids, mask = _text(*prompts)
    before, start = _run(skipped, images, ids, mask), _run(textured, images, ids, mask)
    for level in range(len(LEVEL_SHAPES)):  # zero-initialised projection: the alignment-skip model at first
        assert torch.equal(start.head.token_logits[level], before.head.token_logits[level])
    out = textured(images, ids, mask)
    sum(t.mean() for t in out.head.token_logits).backward()
    assert textured.head.texture_skip.projection.weight.grad.abs().sum() > 0  # it can learn from zero
    # The responses are computed at the first stage's resolution, then averaged over each level's cells.
    first = out.image.stages[0].detach()  # [B, C, H/4, W/4]
    with torch.no_grad():
        textured.head.texture_skip.projection.weight.normal_(std=0.5)
        responses = textured.head.texture_skip(first)  # [B, 16, H/4, W/4]
        assert responses.shape == (2, 16, *first.shape[-2:])
        expected = textured.head.texture_skip.projection(responses.mean(dim=(2, 3), keepdim=True))
        after = textured(images, ids, mask)
        without = _run(skipped, images, ids, mask)
    # P7 is one cell: its texture term is the projection of the mean response over the whole map.
    _, projected = textured.head.project_text(textured.head.dot_product_text(after.head.text, after.text))
    shift = torch.matmul(expected.flatten(2).transpose(1, 2), projected.transpose(-1, -2))
    shift = shift / textured.head.log_scale.exp()
    torch.testing.assert_close(after.head.token_logits[-1] - without.head.token_logits[-1], shift, rtol=1e-4, atol=1e-4)
    config.head.alignment_skip = False
    with pytest.raises(ValueError, match="needs head.alignment_skip"):
        GLIP(config)
