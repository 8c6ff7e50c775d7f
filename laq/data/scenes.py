"""Finding scenes on disk: the scene layout (`root/scenes.csv` + `root/<scene_folder>/frame_NNNN.jpg`) and the
LAPA / Something-Something rawframes layout (`root/<video_id>/img_XXXXX.jpg`), several roots at once, metadata
filters, and a deterministic train/val split by scene.

Filters (`data.filters`) map a CSV column to a condition: a value (equality), a list of values (membership), or
`[op, x]` with op one of > >= < <= == != (numeric when both sides parse as numbers).
"""
from __future__ import annotations

import csv
import logging
import operator
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from common.data import BadSampleError, frame_number, resolve_inside, sorted_frames

log = logging.getLogger(__name__)

_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq,
        "!=": operator.ne}


@dataclass
class Scene:
    """One clip: its frame files in time order, the CSV row (all columns, as strings) and the root it came from."""
    folder: Path
    frames: list[Path]
    meta: dict[str, str] = field(default_factory=dict)
    root: str = ""

    @property
    def label(self) -> str | None:
        value = self.meta.get("label")
        return None if value in (None, "") else value


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _matches(cell: str, condition: Any) -> bool:
    if isinstance(condition, (list, tuple)) and len(condition) == 2 and str(condition[0]) in _OPS:
        op, target = _OPS[str(condition[0])], condition[1]
        left, right = _number(cell), _number(target)
        return op(left, right) if left is not None and right is not None else op(str(cell), str(target))
    if isinstance(condition, (list, tuple)):
        return any(_matches(cell, value) for value in condition)
    left, right = _number(cell), _number(condition)
    if left is not None and right is not None:
        return left == right
    if isinstance(condition, bool):
        return str(cell).strip().lower() in (("true", "1", "yes") if condition else ("false", "0", "no"))
    return str(cell) == str(condition)


class ScanReport:
    """What discovery skipped (scene folder, reason); strict mode raises on the first instead."""

    def __init__(self, strict: bool):
        self.strict = strict
        self.skipped: list[tuple[str, str]] = []

    def bad(self, where: str | Path, reason: str) -> None:
        if self.strict:
            raise BadSampleError(f"{where}: {reason} (data.strict=true; set data.strict=false to skip and count)")
        self.skipped.append((str(where), reason))

    def summary(self, logger: logging.Logger) -> None:
        if self.skipped:
            listed = "; ".join(f"{where} ({reason})" for where, reason in self.skipped[:10])
            more = "" if len(self.skipped) <= 10 else f" and {len(self.skipped) - 10} more"
            logger.warning("Data discovery: %d scene problem(s) (skipped, or split at a frame gap): %s%s",
                           len(self.skipped), listed, more)


def _read_csv(csv_path: Path, filters: Mapping[str, Any], report: ScanReport) -> list[dict[str, str]]:
    with open(csv_path, newline="") as handle:
        reader = csv.DictReader(handle)
        rows = []
        for row in reader:  # a short row has None for its missing cells, a long one extra cells under None
            if None in row.values() or None in row:
                fields = sum(v is not None for k, v in row.items() if k is not None) + len(row.get(None) or [])
                report.bad(f"{csv_path}:{reader.line_num}",
                           f"row has {fields} fields, the header has {len(reader.fieldnames or [])}")
                continue
            rows.append(row)
    columns = set(rows[0]) if rows else set()
    if rows and "scene_folder" not in columns:
        report.bad(csv_path, "missing CSV column 'scene_folder'")
        return []
    missing = [name for name in filters if name not in columns]
    if rows and missing:
        report.bad(csv_path, f"filter column(s) {missing} not in the CSV (columns: {sorted(columns)})")
        return []
    return [row for row in rows if all(_matches(row[name], cond) for name, cond in filters.items())]


def contiguous_runs(frames: Sequence[Path]) -> list[list[Path]]:
    """Frames split where their numbering jumps by more than the scene's usual step (a missing frame), so that no
    pair bridges a gap: frame_0000..0004, frame_0006.. -> two runs. Strided numbering (0, 2, 4, ...) is one run."""
    if len(frames) < 3:
        return [list(frames)]
    numbers = [frame_number(p) for p in frames]
    steps = [b - a for a, b in zip(numbers, numbers[1:])]
    usual = Counter(steps).most_common(1)[0][0]
    runs, current = [], [frames[0]]
    for frame, step in zip(frames[1:], steps):
        if step != usual:
            runs.append(current)
            current = []
        current.append(frame)
    return runs + [current]


def _inside(root: Path, relative: str, allow_outside: bool, where: str) -> Path:
    """root / relative, refused when it leaves root (../, absolute paths) unless data.allow_outside_root."""
    try:
        return resolve_inside(root, relative, allow_outside, what=f"{where}: scene_folder")
    except BadSampleError as exc:
        raise BadSampleError(f"{exc}; set data.allow_outside_root=true if that is intended") from exc


def discover_scenes(folders: str | Sequence[str], filters: Mapping[str, Any] | None = None,
                    min_frames: int = 2, strict: bool = False, layout: str = "auto",
                    allow_outside_root: bool = False) -> tuple[list[Scene], ScanReport]:
    """All usable scenes under one or several roots, in a deterministic order (root, then CSV / name order).

    layout: "scenes" (needs scenes.csv), "rawframes" (every sub-folder is a video), or "auto" (scenes.csv decides).
    Scenes with fewer than `min_frames` frames, missing folders and short CSV rows are skipped and reported
    (strict: raise). A gap in a scene's frame numbering (a missing frame) splits it into contiguous runs, each a
    Scene with the same folder and row, reported (strict: raise). scene_folder entries must stay inside their root
    unless allow_outside_root.
    """
    roots = [folders] if isinstance(folders, (str, Path)) else list(folders)
    filters = dict(filters or {})
    report = ScanReport(strict)
    scenes: list[Scene] = []
    for root in map(Path, roots):
        if not root.is_dir():
            raise FileNotFoundError(
                f"Data folder not found: {root}. Set data.folder=... to your frames (scene layout with scenes.csv, "
                f"or rawframes <video_id>/img_XXXXX.jpg), or make synthetic data with "
                f"`python -m laq.synth --out {root} --scenes 64`.")
        csv_path = root / "scenes.csv"
        use_csv = layout == "scenes" or (layout == "auto" and csv_path.is_file())
        if use_csv:
            if not csv_path.is_file():
                raise FileNotFoundError(f"data.layout=scenes but {csv_path} does not exist")
            rows = _read_csv(csv_path, filters, report)
        else:
            if filters:
                raise ValueError(f"data.filters needs scenes.csv metadata, but {root} has no scenes.csv")
            rows = [{"scene_folder": p.name} for p in sorted(root.iterdir()) if p.is_dir()]
        for row in rows:
            folder = _inside(root, row["scene_folder"], allow_outside_root, str(csv_path if use_csv else root))
            try:
                frames = sorted_frames(folder)
            except BadSampleError as exc:
                report.bad(folder, str(exc))
                continue
            runs = contiguous_runs(frames)
            if len(runs) > 1:
                gaps = [f"{frame_number(a[-1])}->{frame_number(b[0])}" for a, b in zip(runs, runs[1:])]
                report.bad(folder, f"frame numbering jumps ({', '.join(gaps)}): missing frames; split into "
                                   f"{len(runs)} runs so no pair spans a gap")
            for run in runs:
                if len(run) < min_frames:
                    report.bad(folder, f"{len(run)} frames, need at least {min_frames}")
                    continue
                scenes.append(Scene(folder=folder, frames=run, meta=dict(row), root=str(root)))
    return scenes, report


def split_scenes(scenes: Sequence[Scene], val_split: float, seed: int, split_by: str | None = None,
                 val_filters: Mapping[str, Any] | None = None) -> tuple[list[Scene], list[Scene]]:
    """Train / val by scene (never by pair, so no leakage), the same for the same seed and scene list.

    split_by: a CSV column; scenes with the same value (e.g. the `source` video of `_part_` scenes) land on the same
    side, so footage of one source is never on both. val_filters: a rule instead of a random draw — the scenes
    matching these filters (same syntax as data.filters) are the validation set; with split_by as well, a group
    that the rule cuts in two is an error naming it.
    """
    if not 0.0 <= val_split < 1.0:
        raise ValueError(f"data.val_split must be in [0, 1), got {val_split}")
    groups = _groups(scenes, split_by)
    if val_filters:
        missing = sorted({name for s in scenes for name in val_filters if name not in s.meta})
        if missing:
            raise ValueError(f"data.val_filters column(s) {missing} are not in every scene's CSV row")
        val_ids = {i for i, s in enumerate(scenes) if all(_matches(s.meta[k], c) for k, c in val_filters.items())}
        cut = sorted(key for key, members in groups.items() if 0 < len(set(members) & val_ids) < len(members))
        if split_by and cut:
            raise ValueError(f"data.val_filters={dict(val_filters)} puts scenes of the same data.split_by={split_by} "
                             f"value on both sides: {cut[:5]}")
    else:
        order = sorted(groups)
        random.Random(seed).shuffle(order)
        n_val = int(round(len(scenes) * val_split))
        if val_split > 0 and len(groups) >= 2:
            n_val = max(n_val, 1)
        val_ids: set[int] = set()
        for key in order[:-1]:  # at least one group stays for training
            if len(val_ids) >= n_val:
                break
            val_ids.update(groups[key])
    return ([s for i, s in enumerate(scenes) if i not in val_ids], [s for i, s in enumerate(scenes) if i in val_ids])


def _groups(scenes: Sequence[Scene], split_by: str | None) -> dict[str, list[int]]:
    """Scene indices per split group: by folder (the runs of a folder split at a frame gap stay together), or by
    the value of the `split_by` CSV column."""
    if not split_by:
        first_of: dict[Path, str] = {}
        groups_by_folder: dict[str, list[int]] = {}
        for i, scene in enumerate(scenes):
            key = first_of.setdefault(scene.folder, f"{i:09d}")
            groups_by_folder.setdefault(key, []).append(i)
        return groups_by_folder
    lacking = [str(s.folder) for s in scenes if split_by not in s.meta]
    if lacking:
        raise ValueError(f"data.split_by={split_by!r} is not a column of the scenes' CSV (e.g. {lacking[0]})")
    groups: dict[str, list[int]] = {}
    for i, scene in enumerate(scenes):
        groups.setdefault(scene.meta[split_by], []).append(i)
    return groups


def label_vocabulary(scenes: Sequence[Scene]) -> dict[str, int]:
    """Label string -> integer id: integers keep their value; other strings are numbered in sorted order."""
    labels = sorted({s.label for s in scenes if s.label is not None})
    if all(_number(v) is not None and float(v).is_integer() for v in labels):
        return {v: int(float(v)) for v in labels}
    return {v: i for i, v in enumerate(labels)}
