"""SGCLS and SGDET evaluation use predictions only: a ground-truth person box that the model does not pick as
the human is not the human, and a frame whose detections hold no person gets no ground-truth person box."""
import torch

from tests.vidsgg.test_vidsgg_data import hand_built
from vidsgg.data.action_genome import ActionGenome
from vidsgg.data.entries import build_entry
from vidsgg.models.objects import pairs_from_predictions, sgcls_objects, sgdet_objects

GT_PERSON_BOX = [0.0, 0.0, 50.0, 80.0]  # hand_built's person box in every frame


def video_c(tmp_path):
    hand_built(tmp_path)
    return ActionGenome(tmp_path, "test")[0]["gt_annotation"]  # video C: 3 frames, the person and a phone each


def class_distribution(rows: int, person_row_of: dict[int, float]) -> torch.Tensor:
    """(rows, 36) probabilities: a flat non-person class mass, the given person probability per row."""
    probs = torch.full((rows, 36), 0.01)
    probs[:, 5] = 0.5  # column c is class c + 1: class 6 the most likely object class
    for row, person in person_row_of.items():
        probs[row, 0] = person
    return probs / probs.sum(1, keepdim=True)


def test_sgcls_human_is_the_box_with_the_highest_predicted_person_score(tmp_path):
    entry = build_entry(video_c(tmp_path), "sgcls", training=False)
    # Rows per frame: 2f = the GT person box, 2f + 1 = the phone. No label, no person flag, no pair is read from GT.
    assert entry["boxes"][0::2, 1:].tolist() == [GT_PERSON_BOX] * 3
    assert entry["labels"].tolist() == [0] * 6 and not entry["is_person"].any() and entry["human_candidate"].all()
    assert not entry["has_gt"].any()
    # The classifier calls the phone the person in every frame (and the GT person box an object).
    distribution = class_distribution(6, {1: 0.9, 3: 0.9, 5: 0.9, 0: 0.02, 2: 0.02, 4: 0.02})
    labels, scores, humans = sgcls_objects(distribution, entry["boxes"][:, 0].long())
    assert humans.tolist() == [1, 3, 5]
    assert labels.tolist() == [6, 1] * 3
    candidates = entry["pair_idx"].tolist()  # unordered {h, m}; their union features are computed later
    entry["union_feat"] = torch.arange(len(candidates), dtype=torch.float32)[:, None]
    paired = pairs_from_predictions(entry, labels, humans)
    assert paired["pair_idx"].tolist() == [[1, 0], [3, 2], [5, 4]]  # subject = the predicted human
    assert paired["union_feat"][:, 0].long().tolist() == [candidates.index([h, m]) for h, m in [[0, 1], [2, 3], [4, 5]]]
    assert not paired["has_gt"].any()


def test_sgdet_frame_without_a_person_detection_gets_no_ground_truth_person(tmp_path):
    no_person = {"boxes": torch.tensor([[100, 100, 150, 200], [11, 11, 30, 40]], dtype=torch.float32),
                 "labels": torch.tensor([5, 7]), "scores": torch.tensor([0.8, 0.7])}
    entry = build_entry(video_c(tmp_path), "sgdet", [no_person] * 3, training=False)
    assert GT_PERSON_BOX not in entry["boxes"][:, 1:].tolist()
    torch.testing.assert_close(entry["scores"], torch.tensor([0.8, 0.7] * 3))  # no box of score 1.0 supplied
    assert entry["human_candidate"].all() and not entry["is_person"].any() and not entry["has_gt"].any()
    # The human of each frame: the detection with the highest person probability of the object classifier.
    distribution = class_distribution(6, {0: 0.6, 2: 0.6, 4: 0.6, 1: 0.1, 3: 0.1, 5: 0.1})
    labels, scores, humans = sgdet_objects(distribution, entry)
    assert humans.tolist() == [0, 2, 4] and labels[humans].tolist() == [1, 1, 1]
    torch.testing.assert_close(scores[humans], distribution[humans, 0])
    with_person = {"boxes": torch.cat([torch.tensor([[5.0, 5, 60, 90]]), no_person["boxes"]]),
                   "labels": torch.tensor([1, 5, 7]), "scores": torch.tensor([0.4, 0.8, 0.7])}
    entry = build_entry(video_c(tmp_path), "sgdet", [with_person] * 3, training=False)
    labels, scores, humans = sgdet_objects(class_distribution(9, {1: 0.9, 4: 0.9, 7: 0.9}), entry)
    assert humans.tolist() == [0, 3, 6]  # the person detection is the only candidate, whatever the classifier says
    assert entry["boxes"][humans, 1:].tolist() == [[5.0, 5, 60, 90]] * 3 and torch.allclose(scores[humans], torch.tensor(0.4))
