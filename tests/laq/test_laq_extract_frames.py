"""0_extract_frames.py on a tiny video encoded here with PyAV: both layouts, target fps and size."""
import csv
import runpy
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from laq.data.scenes import discover_scenes

SCRIPT = Path(__file__).resolve().parents[2] / "laq" / "scripts" / "0_extract_frames.py"


def encode_video(path: Path, frames: int = 20, fps: int = 10, size: int = 48) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for t in range(frames):
            image = np.zeros((size, size, 3), np.uint8)
            image[:, : (t + 1) * 2] = 200  # a bar that grows each frame
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def run_script(monkeypatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), *args])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    assert done.value.code == 0


def test_scene_layout_with_fps_and_size(tmp_path, monkeypatch):
    encode_video(tmp_path / "clip_a.mp4")
    run_script(monkeypatch, "--videos", str(tmp_path / "clip_a.mp4"), "--out", str(tmp_path / "scenes"),
               "--layout", "scenes", "--fps", "5", "--size", "32")
    rows = list(csv.DictReader(open(tmp_path / "scenes" / "scenes.csv")))
    assert rows[0]["scene_folder"] == "clip_a" and int(rows[0]["end_frame"]) == 9  # 2 s at 5 fps
    scenes, _ = discover_scenes(str(tmp_path / "scenes"))
    assert len(scenes[0].frames) == 10 and scenes[0].frames[0].name == "frame_0000.jpg"
    import cv2
    first, last = cv2.imread(str(scenes[0].frames[0])), cv2.imread(str(scenes[0].frames[-1]))
    assert first.shape == (32, 32, 3) and last.mean() > first.mean()  # frames in time order


def test_rawframes_layout_keeps_all_frames(tmp_path, monkeypatch):
    encode_video(tmp_path / "v.mp4", frames=12)
    (tmp_path / "broken.webm").write_bytes(b"not a video")
    run_script(monkeypatch, "--videos", str(tmp_path), "--out", str(tmp_path / "raw"), "--layout", "rawframes")
    frames = sorted((tmp_path / "raw" / "v").iterdir())
    assert len(frames) == 12 and frames[0].name == "img_00001.jpg"
    assert not (tmp_path / "raw" / "scenes.csv").exists()
    scenes, _ = discover_scenes(str(tmp_path / "raw" / ""), layout="rawframes")
    assert [s.folder.name for s in scenes if s.frames] == ["v"]
