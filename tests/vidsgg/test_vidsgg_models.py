"""STTran shapes, the sliding temporal window, losses, and the paper-size parameter count on the meta device."""
import pytest
import torch

from vidsgg import summary
from vidsgg.models.layers import group_slots
from vidsgg.models.losses import margin_targets, relation_losses
from vidsgg.models.sttran import STTran, STTranConfig


def tiny_entry(pairs_per_frame=(2, 1, 3, 2), feature_dim=32, union_channels=8):
    boxes, im_idx, pair_idx, labels, is_person = [], [], [], [], []
    for frame, n in enumerate(pairs_per_frame):
        human = len(boxes)
        boxes.append([frame, 0, 0, 20, 40])
        labels.append(1)
        is_person.append(True)
        for j in range(n):
            pair_idx.append([human, len(boxes)])
            im_idx.append(frame)
            boxes.append([frame, 5 + j, 5, 30 + j, 25])
            labels.append(2 + j)
            is_person.append(False)
    n_pairs = len(pair_idx)
    return {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels),
            "scores": torch.ones(len(boxes)), "is_person": torch.tensor(is_person), "im_idx": torch.tensor(im_idx),
            "pair_idx": torch.tensor(pair_idx), "features": torch.randn(len(boxes), feature_dim),
            "union_feat": torch.randn(n_pairs, union_channels, 7, 7), "image_size": (64.0, 48.0),
            "attention_gt": torch.randint(0, 3, (n_pairs,)), "spatial_gt": (torch.rand(n_pairs, 6) > 0.6).float(),
            "contacting_gt": (torch.rand(n_pairs, 17) > 0.8).float(), "has_gt": torch.ones(n_pairs, dtype=torch.bool)}


def tiny_model(mode="predcls", **kw):
    torch.manual_seed(0)
    config = STTranConfig(mode=mode, feature_dim=32, union_channels=8, proj_dim=16, embed_dim=8, heads=4,
                          ffn_dim=32, union_dim=16, **kw)
    return STTran(config).eval()


@pytest.mark.parametrize("mode", ["predcls", "sgcls"])
def test_sttran_output_shapes(mode):
    entry = tiny_entry()
    out = tiny_model(mode)(entry)
    assert out["attention_distribution"].shape == (8, 3)
    assert out["spatial_distribution"].shape == (8, 6) and out["contacting_distribution"].shape == (8, 17)
    assert out["rel_features"].shape == (8, 64)
    assert 0 <= out["spatial_distribution"].min() and out["spatial_distribution"].max() <= 1
    if mode == "sgcls":
        assert out["obj_logits"].shape == (12, 37)
        assert (out["pred_labels"][entry["is_person"]] == 1).all() and (out["pred_labels"][~entry["is_person"]] >= 2).all()
    losses = relation_losses(out, entry)
    assert set(losses) == ({"attention", "spatial", "contacting"} | ({"object"} if mode == "sgcls" else set()))


def test_temporal_window_takes_frames_t_minus_1_and_t():
    model = tiny_model(spatial_layers=1, temporal_layers=1)
    entry = tiny_entry()
    base = model(entry)["attention_distribution"]
    changed = dict(entry, features=entry["features"].clone())
    changed["features"][6] += 5.0  # an object box of frame 2 (boxes: f0 0-2, f1 3-4, f2 5-8, f3 9-11)
    out = model(changed)["attention_distribution"]
    frame = entry["im_idx"]
    # Frame 0 uses window (0,1) and frame 1 window (0,1): untouched. Frame 2 and frame 3 (window (2,3)) change.
    assert torch.allclose(out[frame <= 1], base[frame <= 1])
    assert not torch.allclose(out[frame == 2], base[frame == 2])
    assert not torch.allclose(out[frame == 3], base[frame == 3])


def test_group_slots_pads_per_window():
    im_idx = torch.tensor([0, 0, 1, 2, 2, 2])
    index, pad = group_slots(im_idx, torch.tensor([0, 1]), span=2)
    assert index[0, :3].tolist() == [0, 1, 2] and pad[0].tolist() == [False, False, False, True]
    assert index[1].tolist() == [2, 3, 4, 5] and not pad[1].any()


def test_margin_targets_put_positives_first():
    targets = margin_targets(torch.tensor([[0.0, 1, 0, 1], [0, 0, 0, 0]]))
    assert targets.tolist() == [[1, 3, -1, -1], [-1, -1, -1, -1]]


def test_paper_size_parameter_count(capsys):
    """summary.py's total is the model's parameter count; at paper size it is yrcong/STTran's build
    (103,398,359, tests/vidsgg/fixtures) minus the object classifier that build has but PredCLS never uses
    (test_vidsgg_reference.py checks that relation for every reference build)."""
    total = summary.main(["-model", "sttran", "-mode", "predcls"])
    assert total == 103_398_359 - 2_481_869
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"total_params: {total}"


@pytest.mark.parametrize("model", ["sttran", "tempura", "stket", "scenellm"])
def test_summary_builds_every_model_in_every_mode(model, capsys):
    """Paper size on the meta device; SGDET needs no detections file for counting; SGCLS adds the object
    classifier to PredCLS's parameters."""
    counts = {mode: summary.main(["-model", model, "-mode", mode]) for mode in ("predcls", "sgcls", "sgdet")}
    assert counts["sgcls"] == counts["sgdet"] > counts["predcls"] > 50_000_000


def test_summary_refuses_easg(capsys):
    with pytest.raises(SystemExit):
        summary.main(["-dataset", "easg", "-mode", "easgcls"])
    assert "class lists" in capsys.readouterr().err
