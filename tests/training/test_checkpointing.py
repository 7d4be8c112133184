"""Atomic training checkpoints, retention, latest resolution, RNG states, frozen-weight fingerprints."""

from __future__ import annotations

import random

import numpy as np
import torch

from glip.training import checkpointing


def test_save_keeps_the_last_k_and_ignores_partial_files(tmp_path) -> None:
    (tmp_path / "step_00000009.pt.tmp").write_bytes(b"half a file")  # left by a killed run
    for step in (1, 2, 3, 4):
        checkpointing.save_checkpoint(tmp_path, step, {"step": step, "weights": torch.full((2,), float(step))},
                                      keep_last=2)
    assert [s for s, _ in checkpointing.list_checkpoints(tmp_path)] == [3, 4]
    assert not list(tmp_path.glob("*.tmp"))
    latest = checkpointing.latest_checkpoint(tmp_path)
    assert latest.name == "step_00000004.pt"
    assert checkpointing.load_checkpoint(latest)["weights"].tolist() == [4.0, 4.0]
    assert checkpointing.latest_checkpoint(tmp_path / "nothing") is None


def test_rng_state_round_trip() -> None:
    state = checkpointing.rng_state()
    expected = (random.random(), float(np.random.rand()), float(torch.rand(())))
    random.random(), np.random.rand(), torch.rand(())  # move on
    checkpointing.set_rng_state(state)
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == expected


def test_rng_state_survives_a_weights_only_load(tmp_path) -> None:
    path = checkpointing.atomic_save({"rng": checkpointing.rng_state()}, tmp_path / "x.pt")
    expected = float(torch.rand(()))
    torch.rand(())
    checkpointing.set_rng_state(checkpointing.load_checkpoint(path)["rng"])
    assert float(torch.rand(())) == expected


def test_fingerprint_sees_every_bit_name_and_dtype() -> None:
    weights = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(2)}
    reference = checkpointing.fingerprint(weights)
    assert checkpointing.fingerprint({"b": weights["b"], "a": weights["a"].clone()}) == reference  # order-free
    flipped = weights["a"].clone()
    flipped.view(torch.int32)[0, 0] ^= 1  # one bit of one number
    assert checkpointing.fingerprint({**weights, "a": flipped}) != reference
    assert checkpointing.fingerprint({**weights, "a": weights["a"].double()}) != reference
    assert checkpointing.fingerprint({"c": weights["a"], "b": weights["b"]}) != reference
    assert checkpointing.fingerprint({**weights, "a": weights["a"].reshape(3, 2)}) != reference


def test_restore_weights_checks_the_left_out_parameters() -> None:
    import pytest
    from glip.config import get_config
    from glip.modeling import GLIP

    torch.manual_seed(0)
    model = GLIP(get_config("glip-tiny"))
    names = [name for name, _ in model.named_parameters() if name.startswith("backbone.")]
    record = checkpointing.frozen_record(model, names, "model.weights=start.safetensors")
    stored = checkpointing.stored_weights(model, record)
    assert not set(names) & set(stored) and "head.bias0" in stored
    assert set(stored) | set(names) == set(model.state_dict())  # buffers stay: only parameters are left out
    twin = GLIP(get_config("glip-tiny"))  # other random values everywhere
    twin.load_state_dict({**twin.state_dict(), **{n: model.state_dict()[n] for n in names}})
    checkpointing.restore_weights(twin, stored, record, "step_00000002.pt")
    assert all(torch.equal(value, model.state_dict()[key]) for key, value in twin.state_dict().items())
    with torch.no_grad():
        twin.backbone.patch_embed.proj.weight.add_(1e-3)
    with pytest.raises(checkpointing.FrozenWeightsMismatch,
                       match=r"step_00000002.pt does not store its \d+ frozen parameters .*model.weights=start"):
        checkpointing.restore_weights(twin, stored, record, "step_00000002.pt")
