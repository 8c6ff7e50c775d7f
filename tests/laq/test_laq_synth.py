"""Synthetic data: real scene layout, balanced labels, motion in the labelled direction in every quadrant."""
import csv

import cv2
import numpy as np
import pytest

from laq.synth import ACTIONS, write_dataset


def test_layout_labels_and_motion(tmp_path):
    write_dataset(tmp_path, scenes=8, frames=4, image_size=32, square=6, step_px=2, actions=4, grid=2)
    rows = list(csv.DictReader(open(tmp_path / "scenes.csv")))
    assert [int(r["label"]) for r in rows] == [0, 1, 2, 3, 0, 1, 2, 3]
    assert {r["label_name"] for r in rows} == {"right", "left", "down", "up"}
    for row in rows[:4]:
        frames = [cv2.imread(str(tmp_path / row["scene_folder"] / f"frame_{t:04d}.jpg")).astype(float)
                  for t in range(4)]
        assert frames[0].shape == (32, 32, 3) and np.abs(frames[3] - frames[0]).mean() > 3
        _, dx, dy = ACTIONS[int(row["label"])]
        # the change between frames appears in all four quadrants (every code position sees the action)
        change = np.abs(frames[3] - frames[0]).sum(axis=2)
        assert all(change[y:y + 16, x:x + 16].sum() > 0 for y in (0, 16) for x in (0, 16))


def test_impossible_motion_is_refused(tmp_path):
    with pytest.raises(ValueError, match="cell"):
        write_dataset(tmp_path, scenes=1, frames=10, image_size=32, square=12, step_px=4, grid=2)
