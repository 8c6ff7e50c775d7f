import math

import pytest
import torch

from stereo.train.metrics import MetricAverager, disparity_metrics


def test_metrics_match_a_hand_computed_example():
    gt = torch.tensor([[[10.0, 20.0, 100.0, 50.0, 7.0]]])
    pred = torch.tensor([[[10.5, 22.5, 104.0, 51.5, 0.0]]])  # errors 0.5, 2.5, 4, 1.5, (7: invalid)
    valid = torch.tensor([[[True, True, True, True, False]]])
    m = disparity_metrics(pred, gt, valid)
    assert m["epe"] == pytest.approx((0.5 + 2.5 + 4 + 1.5) / 4)
    assert m["rmse"] == pytest.approx(math.sqrt((0.25 + 6.25 + 16 + 2.25) / 4))
    assert m["d1"] == pytest.approx(25.0)      # > 3 px: only the 4 px error
    assert m["d3"] == pytest.approx(75.0)      # > 1 px: 2.5, 4, 1.5
    assert m["bad2"] == pytest.approx(50.0)    # > 2 px: 2.5, 4
    assert m["kitti_d1"] == pytest.approx(0.0)  # 4 px is only 4 % of 100


def test_kitti_d1_needs_both_thresholds():
    gt = torch.tensor([[[40.0, 100.0]]])
    pred = torch.tensor([[[44.0, 106.0]]])  # 4 px = 10 % of 40 (bad); 6 px = 6 % of 100 (bad)
    m = disparity_metrics(pred, gt, torch.ones_like(gt, dtype=torch.bool))
    assert m["kitti_d1"] == pytest.approx(100.0) and m["d1"] == pytest.approx(100.0)
    m = disparity_metrics(torch.tensor([[[44.0, 104.0]]]), gt, torch.ones_like(gt, dtype=torch.bool))
    assert m["kitti_d1"] == pytest.approx(50.0)  # 4 px of 100 is under 5 %


def test_metrics_are_per_image_then_averaged_and_ignore_empty_images():
    gt = torch.zeros(3, 1, 2, 2)
    pred = torch.zeros(3, 1, 2, 2)
    valid = torch.zeros(3, 1, 2, 2, dtype=torch.bool)
    pred[0] += 1.0
    valid[0] = True                 # image 0: 4 pixels, epe 1
    pred[1, 0, 0, 0] = 5.0
    valid[1, 0, 0, 0] = True        # image 1: 1 pixel, epe 5 (pooling pixels would give 9/5)
    m = disparity_metrics(pred, gt, valid)
    assert m["epe"] == pytest.approx(3.0)
    averager = MetricAverager()
    averager.update(pred[:1], gt[:1], valid[:1])
    averager.update(pred[1:], gt[1:], valid[1:])
    assert averager.images == 2 and averager.result()["epe"] == pytest.approx(3.0)


def test_nonfinite_gt_outside_the_mask_does_not_leak():
    gt = torch.tensor([[[float("inf"), 3.0]]])
    m = disparity_metrics(torch.tensor([[[1.0, 3.0]]]), gt, torch.tensor([[[False, True]]]))
    assert m["epe"] == 0.0 and m["rmse"] == 0.0
