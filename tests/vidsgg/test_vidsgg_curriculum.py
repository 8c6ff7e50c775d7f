"""Curriculum: difficulty from the annotations, the subset widening at the epoch boundaries, the loop's step
counts following it, and the flag checks."""
import pytest

from vidsgg.data.action_genome import ActionGenome
from vidsgg.data.curriculum import Curriculum, stage_fraction, video_difficulty
from vidsgg.option_checks import parse_train_args

from tests.vidsgg.test_vidsgg_train import run


def frame(*relation_counts):
    """A frame with one object per count; each object has that many labels spread over the three categories."""
    return [{"person_bbox": None}] + [{"attention_relationship": [0], "spatial_relationship": [0] * (n - 1),
                                       "contacting_relationship": []} for n in relation_counts]


def test_difficulty_and_stage_fractions():
    assert video_difficulty([frame(1), frame(1, 2)]) == pytest.approx(4 / 2)
    assert video_difficulty([frame(3, 3, 3)]) == 9
    assert [stage_fraction(e, [2, 4]) for e in range(6)] == pytest.approx([1 / 3, 1 / 3, 2 / 3, 2 / 3, 1, 1])
    assert stage_fraction(0, []) == 1.0


def test_subset_holds_the_easiest_videos(train_data):
    dataset = ActionGenome(train_data, "train")
    assert Curriculum(dataset, []).subset(0) is dataset
    curriculum = Curriculum(dataset, [1, 2])
    first, second, last = (curriculum.subset(e) for e in (0, 1, 2))
    n = len(dataset)
    assert (len(first), len(second), len(last)) == (-(-n // 3), -(-2 * n // 3), n)
    hardest_kept = max(video_difficulty(dataset.videos[i]["gt_annotation"]) for i in first.indices)
    easiest_left = min(video_difficulty(v["gt_annotation"]) for i, v in enumerate(dataset.videos)
                       if i not in first.indices)
    assert hardest_kept <= easiest_left
    assert set(first.indices) <= set(second.indices)


def test_flags():
    assert parse_train_args(["-curriculum", "easy_to_hard", "-epochs", "6"]).curriculum_boundaries == [2, 4]
    assert parse_train_args(["-curriculum", "easy_to_hard", "-curriculum_epochs", "1,3"]).curriculum_boundaries == [1, 3]
    assert parse_train_args([]).curriculum_boundaries == []
    for bad in (["-curriculum_epochs", "2"], ["-curriculum", "easy_to_hard", "-curriculum_epochs", "3,2"],
                ["-curriculum", "easy_to_hard", "-curriculum_epochs", "a"],
                ["-curriculum", "easy_to_hard", "-dataset", "easg", "-mode", "edgecls"]):
        with pytest.raises(SystemExit):
            parse_train_args(bad)


def test_training_follows_the_curriculum(train_data, tmp_path):
    n = len(ActionGenome(train_data, "train"))
    metrics = run(train_data, tmp_path / "run", "-epochs", "3", "-curriculum", "easy_to_hard",
                  "-curriculum_epochs", "1,2", "-eval_freq", "5", "-lr", "1e-3")
    assert metrics["step"] == -(-n // 3) + -(-2 * n // 3) + n  # batch size 1: one step per video
