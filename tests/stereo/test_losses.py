import pytest
import torch

from stereo.train.losses import build_loss, gradient_loss, multi_scale_loss, sequence_loss


def _gt():
    gt = torch.full((1, 1, 4, 4), 10.0)
    valid = torch.ones_like(gt, dtype=torch.bool)
    valid[..., 0, 0] = False
    return gt, valid


def test_sequence_loss_with_one_prediction_is_plain_l1():
    gt, valid = _gt()
    assert float(sequence_loss([gt + 2.0], gt, valid)) == pytest.approx(2.0)


def test_sequence_loss_weights_with_n_predictions():
    gt, valid = _gt()
    preds = [gt + 1.0, gt + 2.0, gt + 4.0]
    adjusted = 0.9 ** (15 / 2)
    expected = adjusted ** 2 * 1.0 + adjusted * 2.0 + 4.0
    assert float(sequence_loss(preds, gt, valid, gamma=0.9)) == pytest.approx(expected, rel=1e-6)
    # The first prediction's weight is 0.9^15 whatever N is.
    for count in (2, 5, 22):
        preds = [gt + 1.0] + [gt.clone() for _ in range(count - 1)]
        assert float(sequence_loss(preds, gt, valid)) == pytest.approx(0.9 ** 15, rel=1e-5)


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


def test_build_loss_combines_named_terms_and_rejects_unknown_functions():
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
