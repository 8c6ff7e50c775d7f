"""The frequency-prior baseline of the demo: it scores with the training statistics, not with uniform rows."""
from __future__ import annotations

import json

import torch

from vidsgg.data.action_genome import ActionGenome
from vidsgg.data.entries import build_entry
from vidsgg.evaluation import SceneGraphEvaluator
from vidsgg.scripts import frequency_baseline


def test_frequency_prior_beats_uniform_rows_and_writes_metrics(tmp_path):
    from vidsgg.synth import main as synth
    synth(["--out", str(tmp_path / "ag"), "--videos", "20", "--width", "64", "--height", "48", "--seed", "7"])
    metrics = frequency_baseline.main(["-data_path", str(tmp_path / "ag"), "-output", str(tmp_path / "out")])
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["test/with/R@20"] == metrics["test/with/R@20"]
    uniform = SceneGraphEvaluator("predcls", "with")
    test_set = ActionGenome(tmp_path / "ag", "test", "predcls")
    for index in range(len(test_set)):
        annotation = test_set[index]["gt_annotation"]
        entry = build_entry(annotation, "predcls", training=False)
        uniform.evaluate_scene_graph(annotation, frequency_baseline.prior_prediction(entry, torch.ones(37, 26)))
    assert metrics["test/with/R@20"] > uniform.summary()["R@20"] + 0.05, (metrics["test/with/R@20"], uniform.summary())
