"""The evaluator on hand-built frames, one behaviour per constraint, plus IoU, ranking, mR and no mutation."""
import copy

import numpy as np
import pytest
import torch

from vidsgg.evaluation import SceneGraphEvaluator, box_iou_plus1

PERSON = np.array([[0.0, 0.0, 40.0, 80.0]])
CUP = np.array([30.0, 20.0, 50.0, 40.0])


def one_frame_gt(spatial=(1, 2), contacting=(5,)):
    return [[{"person_bbox": PERSON},
             {"class": 11, "bbox": CUP, "attention_relationship": torch.tensor([0]),
              "spatial_relationship": torch.tensor(spatial), "contacting_relationship": torch.tensor(contacting)}]]


def one_frame_pred(att=(5.0, 0.0, 0.0), spatial=None, contacting=None, cup_box=CUP, labels=(1, 11)):
    spatial = np.full(6, 0.05) if spatial is None else np.asarray(spatial)
    contacting = np.full(17, 0.05) if contacting is None else np.asarray(contacting)
    return {"boxes": torch.tensor([[0, *PERSON[0]], [0, *cup_box]], dtype=torch.float32),
            "labels": torch.tensor(labels), "scores": torch.ones(2),
            "pred_labels": torch.tensor(labels), "pred_scores": torch.tensor([1.0, 0.8]),
            "im_idx": torch.tensor([0]), "pair_idx": torch.tensor([[0, 1]]),
            "attention_distribution": torch.tensor([att], dtype=torch.float32),
            "spatial_distribution": torch.tensor(spatial[None], dtype=torch.float32),
            "contacting_distribution": torch.tensor(contacting[None], dtype=torch.float32)}


def spatial_scores(values):
    out = np.full(6, 0.05)
    for k, v in values.items():
        out[k] = v
    return out


def contacting_scores(values):
    out = np.full(17, 0.05)
    for k, v in values.items():
        out[k] = v
    return out


def evaluate(constraint, gt, pred, mode="predcls", **kw):
    ev = SceneGraphEvaluator(mode, constraint=constraint, **kw)
    ev.evaluate_scene_graph(gt, pred)
    return ev.summary()


def test_with_constraint_keeps_one_predicate_per_category():
    # GT: looking_at, two spatial (beneath, in_front_of), holding = 4 triplets; argmax rows can hit 3.
    pred = one_frame_pred(spatial=spatial_scores({1: 0.95, 2: 0.94}), contacting=contacting_scores({5: 0.99}))
    summary = evaluate("with", one_frame_gt(), pred)
    assert summary["R@10"] == pytest.approx(0.75) and summary["R@100"] == pytest.approx(0.75)


def test_semi_constraint_adds_predicates_above_threshold():
    pred = one_frame_pred(spatial=spatial_scores({1: 0.95, 2: 0.94}), contacting=contacting_scores({5: 0.99}))
    assert evaluate("semi", one_frame_gt(), pred)["R@10"] == pytest.approx(1.0)
    # Raise the threshold above the second spatial score: that triplet is gone again.
    assert evaluate("semi", one_frame_gt(), pred, semi_threshold=0.945)["R@10"] == pytest.approx(0.75)
    # A contacting row with nothing above the threshold contributes nothing (no argmax fallback).
    low = one_frame_pred(spatial=spatial_scores({1: 0.95, 2: 0.94}), contacting=contacting_scores({5: 0.5}))
    assert evaluate("semi", one_frame_gt(), low)["R@10"] == pytest.approx(0.75)


def test_no_constraint_ranks_every_cell():
    # Holding gets a low score: with 26 scored cells it ranks below the 10 best but inside the top 20.
    contacting = np.linspace(0.9, 0.5, 17)
    contacting[5] = 0.1
    spatial = np.array([0.2, 0.95, 0.94, 0.3, 0.3, 0.3])
    pred = one_frame_pred(spatial=spatial, contacting=contacting)
    summary = evaluate("no", one_frame_gt(), pred)
    assert summary["R@10"] == pytest.approx(0.75)
    assert summary["R@20"] == pytest.approx(0.75) and summary["R@50"] == pytest.approx(1.0)
    # The with-constraint never reaches holding (argmax is column 0 of the contacting row).
    assert evaluate("with", one_frame_gt(), pred)["R@100"] == pytest.approx(0.5)


def test_iou_uses_plus_one_pixel_areas():
    a, b = np.array([[0.0, 0.0, 2.0, 2.0]]), np.array([[1.0, 0.0, 3.0, 2.0]])
    assert box_iou_plus1(a, b)[0] == pytest.approx(0.5)  # (2·3)/(9+9-6); 0.33 without the +1
    shifted = CUP + np.array([10.0, 0, 10.0, 0])  # IoU (11·21)/(2·441-231) = 0.355 < 0.5
    perfect = dict(spatial=spatial_scores({1: 0.95, 2: 0.94}), contacting=contacting_scores({5: 0.99}))
    assert evaluate("with", one_frame_gt(), one_frame_pred(cup_box=shifted, **perfect))["R@20"] == 0.0
    assert evaluate("with", one_frame_gt(), one_frame_pred(cup_box=shifted, **perfect),
                    iou_threshold=0.3)["R@20"] == pytest.approx(0.75)


def test_sgcls_uses_predicted_labels_and_scores():
    perfect = dict(spatial=spatial_scores({1: 0.95, 2: 0.94}), contacting=contacting_scores({5: 0.99}))
    assert evaluate("with", one_frame_gt(), one_frame_pred(**perfect), mode="sgcls")["R@20"] == pytest.approx(0.75)
    wrong = one_frame_pred(labels=(1, 12), **perfect)
    assert evaluate("with", one_frame_gt(), wrong, mode="sgcls")["R@20"] == 0.0
    assert evaluate("with", one_frame_gt(), wrong, mode="predcls")["R@20"] == 0.0


def test_recall_is_mean_over_frames_and_videos():
    perfect = dict(spatial=spatial_scores({1: 0.95, 2: 0.94}), contacting=contacting_scores({5: 0.99}))
    ev = SceneGraphEvaluator("predcls", "with")
    ev.evaluate_scene_graph(one_frame_gt(), one_frame_pred(**perfect))            # 0.75
    ev.evaluate_scene_graph(one_frame_gt(spatial=(1,)), one_frame_pred(**perfect))  # 1.0
    bad = one_frame_pred(att=(0.0, 5.0, 0.0), spatial=spatial_scores({0: 0.9}), contacting=contacting_scores({0: 0.9}))
    ev.evaluate_scene_graph(one_frame_gt(), bad)                                   # 0.0
    summary = ev.summary()
    assert summary["frames"] == 3 and summary["R@20"] == pytest.approx((0.75 + 1.0 + 0.0) / 3)


def test_mean_recall_variants_differ_as_documented():
    perfect = dict(spatial=spatial_scores({1: 0.95, 2: 0.94}), contacting=contacting_scores({5: 0.99}))
    ev = SceneGraphEvaluator("predcls", "with", mean_recall="per_frame")
    ev.evaluate_scene_graph(one_frame_gt(), one_frame_pred(**perfect))        # in_front_of (sp 2) missed
    ev.evaluate_scene_graph(one_frame_gt(spatial=(2,)), one_frame_pred(**perfect))  # in_front_of missed again
    s = ev.summary()
    # Predicates present: looking_at (2/2), beneath (1/1), in_front_of (0/2), holding (2/2).
    assert s["mR@20/per_predicate"] == pytest.approx((1 + 1 + 0 + 1) / 4)
    # Per frame: beneath occurs in 1 of 2 frames, so its per-frame average is 0.5.
    assert s["mR@20/per_frame"] == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    assert s["mR@20"] == s["mR@20/per_frame"]


def test_inputs_are_not_mutated():
    gt, pred = one_frame_gt(), one_frame_pred()
    gt_copy, pred_copy = copy.deepcopy(gt), {k: v.clone() for k, v in pred.items()}
    for constraint in ("with", "semi", "no"):
        evaluate(constraint, gt, pred)
    for key, value in pred_copy.items():
        assert torch.equal(pred[key], value), key
    assert torch.equal(gt[0][1]["spatial_relationship"], gt_copy[0][1]["spatial_relationship"])
    np.testing.assert_array_equal(gt[0][0]["person_bbox"], gt_copy[0][0]["person_bbox"])


def test_multi_frame_video_with_global_indices():
    """Two frames in one pred dict: pair indices are global, each frame is scored against its own GT."""
    gt = one_frame_gt() + one_frame_gt()
    p0 = one_frame_pred(spatial=spatial_scores({1: 0.95, 2: 0.94}), contacting=contacting_scores({5: 0.99}))
    p1 = one_frame_pred(att=(0.0, 5.0, 0.0))
    pred = {k: torch.cat([p0[k], p1[k]]) for k in p0}
    pred["boxes"][2:, 0] = 1
    pred["im_idx"] = torch.tensor([0, 1])
    pred["pair_idx"] = torch.tensor([[0, 1], [2, 3]])
    ev = SceneGraphEvaluator("predcls", "with")
    per_frame = ev.evaluate_scene_graph(gt, pred)
    np.testing.assert_allclose(per_frame[20], [0.75, 0.0])


def test_bad_arguments():
    with pytest.raises(ValueError, match="constraint"):
        SceneGraphEvaluator("predcls", constraint="some")
    with pytest.raises(ValueError, match="mean_recall"):
        SceneGraphEvaluator("predcls", mean_recall="tempura2")


def test_ground_truth_edited_in_place_is_read_again():
    """No GT cache between calls: the same list object, edited, gives the recall of its new content."""
    gt = one_frame_gt()
    pred = one_frame_pred(spatial=spatial_scores({1: 0.95, 2: 0.94}), contacting=contacting_scores({5: 0.99}))
    ev = SceneGraphEvaluator("predcls", "with")
    first = ev.evaluate_scene_graph(gt, pred)[20]
    gt[0][1]["spatial_relationship"] = torch.tensor([1])  # only 'beneath' now: 3 of 3 GT triplets are hit
    second = ev.evaluate_scene_graph(gt, pred)[20]
    np.testing.assert_allclose([first[0], second[0]], [0.75, 1.0])


def test_evaluate_video_equals_one_call_per_constraint():
    from vidsgg.evaluation import CONSTRAINTS, evaluate_video, frames_with_relations
    gt = one_frame_gt() + one_frame_gt(spatial=(), contacting=())
    gt[1][1]["attention_relationship"] = torch.tensor([], dtype=torch.long)  # frame 1 has no relation
    pred = one_frame_pred(spatial=spatial_scores({1: 0.95}), contacting=contacting_scores({5: 0.99}))
    pred = {k: torch.cat([v, v]) for k, v in pred.items()}
    pred["boxes"][2:, 0], pred["im_idx"], pred["pair_idx"] = 1, torch.tensor([0, 1]), torch.tensor([[0, 1], [2, 3]])
    together = [SceneGraphEvaluator("predcls", c) for c in CONSTRAINTS]
    evaluate_video(together, gt, pred)
    for constraint, evaluator in zip(CONSTRAINTS, together):
        assert evaluator.summary() == evaluate(constraint, gt, pred)
    assert frames_with_relations(gt) == 1 == together[0].summary()["frames"]
