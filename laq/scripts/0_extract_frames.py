"""Decode videos (webm, mp4, ... via PyAV) into frames, in the scene layout or the rawframes layout.

    python laq/scripts/0_extract_frames.py --videos V1.webm V2.mp4 DIR/ --out FRAMES --layout scenes \
        [--fps 12] [--size 256] [--quality 95]

--layout scenes:    FRAMES/scenes.csv (scene_idx, scene_folder, source, fps, start_frame, end_frame) and
                    FRAMES/<video stem>/frame_NNNN.jpg (from 0)
--layout rawframes: FRAMES/<video stem>/img_XXXXX.jpg (from 1, as mmaction / LAPA's Something-Something set-up)
--fps keeps frames at about that rate (0: every decoded frame); --size squashes to size x size (0: keep), or
give WxH. An unreadable video is reported and skipped (--strict: raise naming the file).
"""
import argparse
import csv
import sys
from pathlib import Path

import av
import cv2

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
    args = parser.parse_args()
    out, size = Path(args.out), parse_size(args.size)
    out.mkdir(parents=True, exist_ok=True)
    rows, failed = [], []
    for video in list_videos(args.videos):
        folder = out / video.stem
        folder.mkdir(exist_ok=True)
        count = 0
        try:
            for count, image in enumerate(decode_frames(video, args.fps, size), start=1):
                name = f"frame_{count - 1:04d}.jpg" if args.layout == "scenes" else f"img_{count:05d}.jpg"
                cv2.imwrite(str(folder / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, args.quality])
        except (av.error.FFmpegError, ValueError) as exc:  # PyAV raises FFmpegError subclasses on bad input
            if args.strict:
                raise RuntimeError(f"Could not decode video {video}: {exc}") from exc
            print(f"warning: skipping unreadable video {video}: {exc}", file=sys.stderr)
            failed.append(video)
            continue
        print(f"{video} -> {folder} ({count} frames)")
        rows.append({"scene_idx": len(rows), "scene_folder": video.stem, "source": str(video), "fps": args.fps,
                     "start_frame": 0, "end_frame": count - 1})
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
