"""Loss groups by label type: a mixed batch is split, each group's terms score its own samples; a term's
max_disparity restricts it to GT below that value."""
import pytest
import torch

from stereo.train.objective import build_objective, take

L1 = {"function": "disparity_l1", "weight": 1.0, "params": {}}


def _batch(errors, labels, gt_value=10.0):
    """Final predictions off by `errors[i]` px for sample i (2×2 images, all valid)."""
    gt = torch.full((len(errors), 1, 2, 2), gt_value)
    pred = gt + torch.tensor(errors, dtype=torch.float32).view(-1, 1, 1, 1)
    batch = {"disparity": gt, "valid": torch.ones_like(gt, dtype=torch.bool), "label_type": labels,
             "left": torch.zeros(len(errors), 3, 2, 2)}
    return {"disparity": pred, "init_disparity": pred, "disparities": [pred]}, batch


def test_mixed_batch_routes_each_sample_to_its_group():
    objective = build_objective({"synthetic": {"l1": L1}, "real": {"l1": {**L1, "weight": 3.0}}})
    outputs, batch = _batch([1.0, 2.0, 4.0], ["synthetic", "real", "synthetic"])
    total, terms = objective(outputs, batch)
    # synthetic: samples 0 and 2, L1 mean 2.5, weight 1; real: sample 1, L1 2, weight 3; sample-weighted mean.
    assert float(total) == pytest.approx(2 / 3 * 2.5 + 1 / 3 * 3 * 2.0)
    assert float(terms["synthetic/l1"]) == pytest.approx(2.5) and float(terms["real/l1"]) == pytest.approx(2.0)


def test_one_group_keeps_plain_term_names_and_unknown_label_is_an_error():
    objective = build_objective({"stereo": {"l1": L1}})
    outputs, batch = _batch([1.0, 3.0], ["stereo", "stereo"])
    total, terms = objective(outputs, batch)
    assert float(total) == pytest.approx(2.0) and set(terms) == {"l1"}
    with pytest.raises(KeyError, match="lidar"):
        objective(*_batch([1.0], ["lidar"]))


def test_term_max_disparity_leaves_out_larger_ground_truth():
    objective = build_objective({"stereo": {"l1": {**L1, "params": {"max_disparity": 15.0}}}})
    outputs, batch = _batch([2.0, 2.0], ["stereo", "stereo"])
    batch["disparity"][1] = 20.0  # beyond 15 px: this sample's pixels do not count
    outputs["disparity"][1] = 100.0
    assert float(objective(outputs, batch)[0]) == pytest.approx(2.0)


def test_take_selects_samples_in_nested_outputs():
    value = {"a": torch.arange(4), "b": [torch.arange(4) * 2], "names": ["w", "x", "y", "z"], "n": 3}
    picked = take(value, torch.tensor([1, 3]))
    assert picked["a"].tolist() == [1, 3] and picked["b"][0].tolist() == [2, 6]
    assert picked["names"] == ["x", "z"] and picked["n"] == 3
