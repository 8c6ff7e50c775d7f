from pathlib import Path

import pytest
import torch

from stereo.train.config import load_config
from stereo.train.losses import build_loss, gradient_loss, multi_scale_loss, sequence_loss
from stereo.train.objective import build_objective

TINY = Path(__file__).resolve().parents[2] / "stereo" / "configs" / "train" / "stereo_tiny.json"


def _gt():
    gt = torch.full((1, 1, 4, 4), 10.0)
    valid = torch.ones_like(gt, dtype=torch.bool)
    valid[..., 0, 0] = False
    return gt, valid


def test_sequence_loss_with_one_prediction_is_plain_l1():
    gt, valid = _gt()
    assert float(sequence_loss([gt + 2.0], gt, valid)) == pytest.approx(2.0)
    assert float(sequence_loss([gt + 2.0], gt, valid, schedule="raft")) == pytest.approx(2.0)


def test_sequence_loss_weights_are_the_papers_gamma_to_the_k_minus_i():
    gt, valid = _gt()
    preds = [gt + 1.0, gt + 2.0, gt + 4.0]
    expected = 0.9 ** 2 * 1.0 + 0.9 * 2.0 + 4.0
    assert float(sequence_loss(preds, gt, valid, gamma=0.9)) == pytest.approx(expected, rel=1e-6)
    # With 22 iterations (training), the first prediction weighs 0.9^21.
    preds = [gt + 1.0] + [gt.clone() for _ in range(21)]
    assert float(sequence_loss(preds, gt, valid)) == pytest.approx(0.9 ** 21, rel=1e-5)


def test_raft_schedule_keeps_the_first_weight_at_gamma_15():
    gt, valid = _gt()
    preds = [gt + 1.0, gt + 2.0, gt + 4.0]
    adjusted = 0.9 ** (15 / 2)
    assert float(sequence_loss(preds, gt, valid, schedule="raft")) == pytest.approx(adjusted ** 2 + adjusted * 2 + 4)
    for count in (2, 5, 22):
        preds = [gt + 1.0] + [gt.clone() for _ in range(count - 1)]
        assert float(sequence_loss(preds, gt, valid, schedule="raft")) == pytest.approx(0.9 ** 15, rel=1e-5)


def test_invalid_pixels_do_not_count():
    gt, valid = _gt()
    pred = gt.clone()
    pred[..., 0, 0] = 1000.0
    assert float(sequence_loss([pred], gt, valid)) == 0.0


def test_multi_scale_and_gradient_terms():
    gt, valid = _gt()
    assert float(multi_scale_loss(gt + 2.0, gt, valid, weights=(1.0, 0.5))) == pytest.approx(2.0 + 0.5 * 1.0)
    flat = gradient_loss(torch.full((1, 1, 4, 4), 5.0), torch.rand(1, 3, 4, 4))
    ramp = gradient_loss(torch.arange(16.0).view(1, 1, 4, 4) + 1, torch.zeros(1, 3, 4, 4))
    assert float(flat) == 0.0 and float(ramp) > 0


def test_foundation_stereo_config_loss_is_smooth_l1_on_d0_plus_the_gamma_sequence():
    gt, valid = _gt()
    compute = build_objective(load_config(TINY)["loss"])
    init = gt + 0.5                         # smooth-L1 of 0.5 = 0.5 · 0.5² = 0.125
    preds = [gt + 3.0, gt - 2.0, gt + 1.0]  # 0.81·3 + 0.9·2 + 1
    outputs = {"init_disparity": init, "disparities": preds, "disparity": preds[-1]}
    total, terms = compute(outputs, {"disparity": gt, "valid": valid, "left": torch.zeros(1, 3, 4, 4)})
    assert float(terms["init"]) == pytest.approx(0.125)
    assert float(terms["sequence"]) == pytest.approx(0.81 * 3 + 0.9 * 2 + 1)
    assert float(total) == pytest.approx(0.125 + 0.81 * 3 + 0.9 * 2 + 1)


def test_build_loss_combines_named_terms_and_rejects_bad_settings():
    gt, valid = _gt()
    compute = build_loss({"init": {"function": "smooth_l1", "weight": 2.0, "params": {"prediction": "init"}},
                          "seq": {"function": "sequence", "weight": 1.0}})
    outputs = {"init_disparity": gt + 0.5, "disparity": gt + 3.0, "disparities": [gt + 3.0]}
    total, terms = compute(outputs, {"disparity": gt, "valid": valid, "left": torch.zeros(1, 3, 4, 4)})
    assert float(terms["init"]) == pytest.approx(0.125) and float(terms["seq"]) == pytest.approx(3.0)
    assert float(total) == pytest.approx(2 * 0.125 + 3.0)
    with pytest.raises(ValueError, match="loss.bad.function"):
        build_loss({"bad": {"function": "l7"}})
    with pytest.raises(ValueError, match="unknown keys"):
        build_loss({"x": {"function": "sequence", "wieght": 1}})
    with pytest.raises(ValueError, match="loss.seq.params.schedule"):
        build_loss({"seq": {"function": "sequence", "params": {"schedule": "igev"}}})
