"""GLIPv2's masked language modelling: BERT masking statistics, special tokens and padding never
masked, positive spans only when asked, labels, the loss on masked tokens only, the LM head."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from glip.config import PretrainingConfig
from glip.modeling.pretraining_heads import PretrainingHeads
from glip.training.mlm import IGNORE_INDEX, mask_tokens, mlm_loss, positive_token_mask

CLS, SEP, PAD, MASK, VOCAB = 101, 102, 0, 103, 30522
SPECIAL = [PAD, CLS, SEP, MASK, 100]  # the bert-base-uncased special tokens


def _prompts(batch: int = 1024, length: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """[CLS] words [SEP] padding, of random lengths; words are ids 1000..29999."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 30000, (batch, length), generator=generator)
    lengths = torch.randint(4, length + 1, (batch,), generator=generator)
    positions = torch.arange(length)[None, :]
    attention = (positions < lengths[:, None]).long()
    ids[:, 0] = CLS
    ids[torch.arange(batch), lengths - 1] = SEP
    ids[attention == 0] = PAD
    return ids, attention


def _mask(ids, attention, seed=0, **kwargs):
    return mask_tokens(ids, attention, generator=torch.Generator().manual_seed(seed), mask_token_id=MASK,
                       vocab_size=VOCAB, special_ids=SPECIAL, **kwargs)


def test_bert_masking_statistics() -> None:
    ids, attention = _prompts()
    masked = _mask(ids, attention)
    chosen = masked.labels != IGNORE_INDEX
    eligible = (attention > 0) & (ids != CLS) & (ids != SEP)
    assert not (chosen & ~eligible).any()  # never [CLS], [SEP] or padding
    assert abs(chosen.sum().item() / eligible.sum().item() - 0.15) < 0.01
    n = chosen.sum().item()
    as_mask = (masked.input_ids[chosen] == MASK).sum().item() / n
    unchanged = (masked.input_ids[chosen] == ids[chosen]).sum().item() / n
    assert abs(as_mask - 0.8) < 0.02 and abs(unchanged - 0.1) < 0.02
    assert abs((1 - as_mask - unchanged) - 0.1) < 0.02  # random vocabulary tokens
    assert torch.equal(masked.labels[chosen], ids[chosen])  # labels: the original ids ...
    assert (masked.labels[~chosen] == IGNORE_INDEX).all()  # ... -100 elsewhere
    assert torch.equal(masked.input_ids[~chosen], ids[~chosen])  # the rest of the prompt untouched


def test_masking_is_a_function_of_the_generator() -> None:
    ids, attention = _prompts(batch=8)
    first, again, other = _mask(ids, attention, 3), _mask(ids, attention, 3), _mask(ids, attention, 4)
    assert torch.equal(first.input_ids, again.input_ids) and torch.equal(first.labels, again.labels)
    assert not torch.equal(first.labels, other.labels)


def test_only_positive_spans() -> None:
    ids, attention = _prompts(batch=256)
    positive_map = torch.zeros(2, ids.shape[1])
    positive_map[0, 3:6] = 1.0
    positive_map[1, 10:12] = 1.0
    targets = [{"positive_map": positive_map} for _ in range(ids.shape[0])]
    allowed = positive_token_mask(targets, ids.shape[1])
    assert allowed[0].nonzero().squeeze(1).tolist() == [3, 4, 5, 10, 11]
    chosen = _mask(ids, attention, allowed=allowed).labels != IGNORE_INDEX
    assert chosen.any() and not (chosen & ~allowed).any()
    # An image without boxes has no positive span: nothing of it is masked.
    empty = positive_token_mask([{"positive_map": torch.zeros(0, ids.shape[1])}], ids.shape[1])
    assert not empty.any()


def test_loss_is_the_cross_entropy_of_the_masked_tokens_only() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 11, generator=generator, requires_grad=True)
    labels = torch.full((2, 5), IGNORE_INDEX)
    labels[0, 1], labels[1, 3] = 4, 7
    loss = mlm_loss(logits, labels)
    expected = (F.cross_entropy(logits[0, 1][None], torch.tensor([4]))
                + F.cross_entropy(logits[1, 3][None], torch.tensor([7]))) / 2
    torch.testing.assert_close(loss, expected)
    loss.backward()
    untouched = torch.ones(2, 5, dtype=torch.bool)
    untouched[0, 1] = untouched[1, 3] = False
    assert not logits.grad[untouched].any()  # other positions play no part


def test_no_masked_token_gives_exactly_zero() -> None:
    logits = torch.randn(1, 4, 6, requires_grad=True)
    loss = mlm_loss(logits, torch.full((1, 4), IGNORE_INDEX))
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None and not logits.grad.any()


def test_lm_head_is_untied_dense_gelu_layernorm_decoder() -> None:
    heads = PretrainingHeads(PretrainingConfig(mlm=True), visual_dim=8, text_dim=16, vocab_size=50)
    assert heads.inter_image is None
    head = heads.mlm
    text = torch.randn(2, 3, 16)
    expected = head.decoder(F.layer_norm(F.gelu(head.dense(text)), (16,), head.norm.weight, head.norm.bias, 1e-12))
    torch.testing.assert_close(head(text), expected)
    assert head(text).shape == (2, 3, 50)
