"""vidsgg/scripts/tune.py: the guide's Optuna search over train.py, objective val R@20, resumable study."""
from __future__ import annotations

import json

import pytest

from vidsgg.scripts import tune

TINY = ["-backbone_depth", "18", "-image_size", "40", "-max_size", "56", "-proj_dim", "16", "-embed_dim", "8",
        "-hidden_dim", "32", "-temporal_layer", "1", "-num_heads", "4", "-union_dim", "16", "-bn_momentum", "0.1"]


def test_a_trial_then_one_more_in_the_same_study(train_data, tmp_path):
    flags = ["-data_path", str(train_data), "-cache_dir", str(train_data / "cache"), *TINY, "-epochs", "1",
             "-eval_freq", "1", "-max_eval_videos", "2", "-warmup_steps", "0"]
    study = tune.main(["-study_dir", str(tmp_path), "-n_trials", "1", "--", *flags])
    assert len(study.trials) == 1
    for trial in study.trials:
        assert 1e-5 <= trial.params["lr"] <= 1e-3 and trial.params["batch_size"] in (1, 2, 4)
        metrics = json.loads((tmp_path / f"trial_{trial.number}" / "metrics.json").read_text())
        assert trial.value == metrics["val/with/R@20"]
        assert json.loads((tmp_path / f"trial_{trial.number}" / "config.json").read_text())["lr"] == trial.params["lr"]
    again = tune.main(["-study_dir", str(tmp_path), "-n_trials", "1", "--", *flags])
    assert len(again.trials) == 2 and again.best_value == max(t.value for t in again.trials)
    with pytest.raises(SystemExit):
        tune.main(["-study_dir", str(tmp_path), "--", *flags, "-lr", "1e-4"])
