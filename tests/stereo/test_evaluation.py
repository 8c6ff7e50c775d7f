"""The evaluation helper: strict by default (naming the bad file), counted skips, an error when nothing was
evaluated, and the best constant disparity as the oracle baseline."""
import shutil

import numpy as np
import pytest
import torch

from common.data import BadSampleError
from stereo.train.dataloader import EvalDataset
from stereo.train.evaluation import BestConstant, EvaluationError, evaluate_dataset

CPU = torch.device("cpu")


def _gt_predictor(dataset):
    """A perfect predictor for `dataset` (looks the GT up by image content)."""
    samples = [dataset[i] for i in range(len(dataset))]

    def predict(left, right):
        for sample in samples:
            if torch.equal(sample["left"], left[0]):
                return sample["disparity"][None]
        raise AssertionError("unknown pair")

    return predict


def test_perfect_predictions_score_zero_and_report_counts(synth_dirs):
    dataset = EvalDataset(synth_dirs[1], "folder", 32)
    metrics = evaluate_dataset(_gt_predictor(dataset), dataset, CPU)
    assert metrics["epe"] == pytest.approx(0.0, abs=1e-6) and metrics["pairs"] == 3 and metrics["skipped"] == 0
    assert metrics["best_constant_epe"] > 1.0  # a constant cannot follow the scene


def _copy_with_a_bad_pair(source, target):
    shutil.copytree(source, target)
    bad = sorted((target / "right" / "rgb").iterdir())[0]
    bad.write_bytes(b"not a png")
    return bad


def test_a_bad_pair_is_an_error_naming_it_unless_skipping(synth_dirs, tmp_path):
    bad = _copy_with_a_bad_pair(synth_dirs[1], tmp_path / "val")
    dataset = EvalDataset(tmp_path / "val", "folder", 32)  # non-strict dataset: returns SkippedSample
    with pytest.raises(BadSampleError, match=bad.name):
        evaluate_dataset(None, dataset, CPU, constant=5.0)
    metrics = evaluate_dataset(None, dataset, CPU, constant=5.0, skip_bad=True)
    assert metrics["pairs"] == 2 and metrics["skipped"] == 1


def test_nothing_evaluated_is_an_error_not_nan(synth_dirs, tmp_path):
    shutil.copytree(synth_dirs[1], tmp_path / "val")
    for image in (tmp_path / "val" / "right" / "rgb").iterdir():
        image.write_bytes(b"broken")
    with pytest.raises(EvaluationError, match="No pair evaluated out of 3: 3 unreadable"):
        evaluate_dataset(None, EvalDataset(tmp_path / "val", "folder", 32), CPU, constant=1.0, skip_bad=True)


def test_best_constant_is_the_per_image_weighted_median():
    rng = np.random.default_rng(0)
    images = [rng.uniform(5, 30, size=n) for n in (50, 400, 120)]  # different valid-pixel counts
    best = BestConstant()
    for values in images:
        gt = torch.tensor(np.round(values, 2), dtype=torch.float32)
        best.update(gt, torch.ones_like(gt, dtype=torch.bool))
    constant, epe = best.result()
    per_image_epe = lambda c: np.mean([np.abs(np.round(v, 2) - c).mean() for v in images])
    candidates = np.arange(5, 30, 0.01)
    brute = candidates[np.argmin([per_image_epe(c) for c in candidates])]
    assert per_image_epe(constant) == pytest.approx(per_image_epe(brute), abs=1e-4)
    assert epe == pytest.approx(per_image_epe(constant), abs=1e-3)
