"""Control scores on the tracks (sensitivity, light-swap), the per-light baseline, and how the benchmark tar's
keys are grouped into one sweep per object."""
import json
import numpy as np
import pytest
import torch

from common.data import BadSampleError
from shadow.baselines import PerLightBaseline, light_features
from shadow.tracks import TRACKS, TrackGroup, TrackScores, benchmark_groups, light_change, summarise, swap_test


def sweep(n=4, size=8):
    """n maps of a square shadow that moves one pixel right per parameter value."""
    maps = torch.zeros(n, 1, size, size)
    for i in range(n):
        maps[i, 0, 2:5, i:i + 3] = 1.0
    return maps


def test_light_change_is_the_mean_difference_of_neighbours():
    maps = sweep(3)
    expected = np.mean([(maps[1] - maps[0]).abs().mean(), (maps[2] - maps[1]).abs().mean()])
    assert light_change(maps, circular=False) == pytest.approx(float(expected))
    with_wrap = np.mean([(maps[(i + 1) % 3] - maps[i]).abs().mean() for i in range(3)])
    assert light_change(maps, circular=True) == pytest.approx(float(with_wrap))


def test_swap_test_is_one_for_the_target_and_one_half_when_the_light_is_ignored():
    target = sweep(4)
    assert swap_test(target, target) == (12.0, 12)
    ignores_light = target[1:2].expand_as(target)
    correct, pairs = swap_test(ignores_light, target)
    assert pairs == 12 and correct / pairs == pytest.approx(0.5)


def test_scores_of_a_perfect_and_a_light_blind_predictor():
    target = sweep(3)
    group = TrackGroup("softness_control", 0, lambda: [])
    perfect, blind = TrackScores(), TrackScores()
    perfect.add(group, target, target)
    blind.add(group, target[:1].expand_as(target), target)
    assert perfect.summary()["softness_control/sensitivity"] == pytest.approx(1.0)
    assert perfect.summary()["softness_control/swap_accuracy"] == 1.0
    assert perfect.summary()["softness_control/iou"] == pytest.approx(1.0)
    assert blind.summary()["softness_control/sensitivity"] == 0.0
    assert blind.summary()["softness_control/swap_accuracy"] == pytest.approx(0.5)
    halved = TrackScores()
    halved.add(group, target * 0.5 + target[:1] * 0.5, target)  # moves half as much as the target
    assert halved.summary()["softness_control/sensitivity"] == pytest.approx(0.5)
    metrics = summarise([perfect.summary(), perfect.summary()], {"baseline": blind.summary()})
    assert metrics["sensitivity/size"] == pytest.approx(1.0) and metrics["sensitivity/size_std"] == 0.0
    assert metrics["baseline/sensitivity/size"] == 0.0 and metrics["baseline/swap_accuracy/size"] == 0.5
    assert metrics["all/iou"] == pytest.approx(1.0) and "baseline/all/rmse" in metrics


class FakeTrainSet:
    """lights() and shadow_map(i): sample i's map is constant i, so a mean names the neighbours it averaged."""

    def __init__(self, lights, bad=()):
        self._lights, self.bad = np.array(lights, np.float64), set(bad)

    def __len__(self):
        return len(self._lights)

    def lights(self):
        return self._lights

    def shadow_map(self, index):
        if index in self.bad:
            raise BadSampleError(f"sample {index} is unreadable")
        return torch.full((1, 2, 2), float(index))


def test_per_light_baseline_averages_the_nearest_lights():
    train = FakeTrainSet([[30, 0, 2], [30, 10, 2], [30, 180, 2], [30, 0, 8], [0, 90, 2], [0, 270, 2]])
    baseline = PerLightBaseline(train, k=2)
    assert baseline.map_for(30, 5, 2).mean().item() == pytest.approx(0.5)  # samples 0 and 1
    assert baseline.map_for(30, 0, 7).mean().item() == pytest.approx(1.5)  # 3 (size 8) and 0
    # At θ = 0 the azimuth means nothing: both overhead lights are at distance 0.
    assert baseline.map_for(0, 0, 2).mean().item() == pytest.approx(4.5)
    out = baseline(torch.tensor([30.0, 0.0]), torch.tensor([5.0, 0.0]), torch.tensor([2.0, 2.0]))
    assert out.shape == (2, 1, 2, 2) and out[1].mean().item() == pytest.approx(4.5)
    assert np.allclose(light_features(np.array([[90.0, 0.0, 3.0]]))[0], [8.0, 0.0, 0.0, 3.0], atol=1e-9)


def test_per_light_baseline_passes_over_unreadable_samples():
    train = FakeTrainSet([[30, 0, 2], [30, 10, 2], [30, 20, 2]], bad={0})
    assert PerLightBaseline(train, k=2).map_for(30, 0, 2).mean().item() == pytest.approx(1.5)  # 1 and 2


class FakeTar:
    """keys / metadata / lights() as BenchmarkTarDataset has them."""

    def __init__(self, entries):
        self.keys = [key for key, _ in entries]
        self.metadata = {key: meta for key, meta in entries}

    def lights(self):
        return np.array([[self.metadata[k][p] for p in ("theta", "phi", "size")] for k in self.keys], np.float64)

    def __getitem__(self, index):
        return self.keys[index]


def softness_entries(object_major):
    sizes = [s for _, _, s in TRACKS["softness_control"]]
    order = [(o, s) for o in range(2) for s in sizes] if object_major else [(o, s) for s in sizes for o in range(2)]
    return [(f"softness_control_{i:03d}", {"track": "softness_control", "theta": 30, "phi": 0, "size": s})
            for i, (_, s) in enumerate(order)]


@pytest.mark.parametrize("object_major", [True, False])
def test_benchmark_keys_are_grouped_into_one_sweep_per_object(object_major):
    groups = benchmark_groups(FakeTar(softness_entries(object_major)))
    assert len(groups) == 2 and all(g.controlled for g in groups)
    keys = [g.load() for g in groups]
    expected = ([["softness_control_000", "softness_control_001", "softness_control_002"],
                 ["softness_control_003", "softness_control_004", "softness_control_005"]] if object_major else
                [["softness_control_000", "softness_control_002", "softness_control_004"],
                 ["softness_control_001", "softness_control_003", "softness_control_005"]])
    assert keys == expected


def test_benchmark_track_that_is_no_sweep_is_scored_for_closeness_only(caplog):
    entries = [(f"softness_control_{i:03d}", {"track": "softness_control", "theta": 30, "phi": 0, "size": 2})
               for i in range(3)]
    groups = benchmark_groups(FakeTar(entries))
    assert len(groups) == 3 and not any(g.controlled for g in groups)
    assert "no sensitivity or light-swap test" in caplog.text


def test_headline_puts_the_model_beside_both_baselines(tmp_path, capsys):
    from shadow.scripts.headline import main as headline_main
    metrics = {"all/iou": 0.65, "baseline_light/all/iou": 0.55, "baseline/all/iou": 0.35,
               "sensitivity/size": 0.9, "sensitivity/theta": 1.1, "sensitivity/phi": 1.0}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    headline_main(["--eval", str(tmp_path), "--output", str(tmp_path / "headline.json")])
    rows = json.loads((tmp_path / "headline.json").read_text())["rows"]
    assert [(r["kind"], r["metric"], r["value"]) for r in rows] == [
        ("model", "tracks/all/iou", 0.65), ("baseline", "tracks/all/iou", 0.55), ("baseline", "tracks/all/iou", 0.35),
        ("model", "tracks/sensitivity/size", 0.9), ("model", "tracks/sensitivity/theta", 1.1),
        ("model", "tracks/sensitivity/phi", 1.0)]
    assert rows[1]["name"].startswith("per-light") and all(r["higher_is_better"] for r in rows)
    with pytest.raises(SystemExit):
        headline_main(["--eval", str(tmp_path / "none"), "--output", str(tmp_path / "h.json")])
    assert "metrics.json does not exist" in capsys.readouterr().err
