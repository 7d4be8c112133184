"""The GLIP loss against the official loss values and ATSS assignments of the golden training case."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from glip.checkpoint import convert_official_state_dict, load_state_strict
from glip.config import get_config
from glip.images import PreprocessConfig, prepare_images
from glip.modeling.glip import GLIP
from glip.reference import build_official_state_dict, find_buffers, find_manifest
from glip.training.loss import DEFAULT_WEIGHTS, GLIPLoss
from support import require_reference


def run_official_case():
    """The GLIP-T model with the case's weights, run in training mode on the case's image."""
    loss_json, loss_inputs, image = (require_reference("glip_t", "case_a", name)
                                     for name in ("loss.json", "loss_inputs.npz", "image.png"))
    case = image.parent
    reference = json.loads(loss_json.read_text())
    arrays = np.load(loss_inputs)
    config = get_config("glip-t")
    # Training mode with every stochastic module switched off, as the reference run did.
    config.swin.drop_path_rate = 0.0
    config.text.dropout = 0.0
    config.head.fusion_dropout = 0.0
    config.head.fusion_drop_path = 0.0
    model = GLIP(config)
    state = build_official_state_dict(find_manifest(case, "glip-t"), find_buffers(case), reference["seed"])
    load_state_strict(model, convert_official_state_dict(state, config))
    model.train()
    batch = prepare_images([image], PreprocessConfig(min_size=512, max_size=None))
    ids = torch.from_numpy(arrays["input_ids"])
    mask = torch.from_numpy(arrays["attention_mask"])
    output = model(batch.tensor, ids, mask)
    targets = [{"boxes": torch.from_numpy(arrays["gt_boxes_xyxy"]).float(),
                "positive_map": torch.from_numpy(arrays["positive_map"]).float()}]
    return reference, arrays, output, targets, mask


@pytest.fixture(scope="module")
def official_case():
    """Runs the case once per module, on first use inside a test: missing data fails that test."""
    cache = []

    def get():
        if not cache:
            cache.append(run_official_case())
        return cache[0]

    return get


def test_atss_positives_match_official(official_case):
    reference, arrays, output, targets, _ = official_case()
    _, _, positive = GLIPLoss().assign(output.anchors, targets)
    assert [a.shape[0] for a in output.anchors] == reference["anchors_per_level"]
    ours = set(positive[0].nonzero().flatten().tolist())
    official = {i for t in reference["atss_per_target"].values() for i in t["positive_anchor_flat_indices"]}
    assert ours == official
    labels = arrays["atss_cls_labels"]
    assert ours == set(np.nonzero(labels)[0].tolist())


def test_loss_values_match_official(official_case):
    reference, _, output, targets, mask = official_case()
    losses = GLIPLoss()(output, targets, mask)
    official = reference["losses"]
    assert losses["token"].item() == pytest.approx(official["loss_dot_product_token"], rel=1e-4)
    assert (DEFAULT_WEIGHTS["box"] * losses["box"]).item() == pytest.approx(official["loss_reg"], rel=1e-4)
    assert losses["centerness"].item() == pytest.approx(official["loss_centerness"], rel=1e-4)
    total = sum(DEFAULT_WEIGHTS[k] * v for k, v in losses.items())
    assert total.item() == pytest.approx(reference["loss_total"], rel=1e-4)
    total.backward()
