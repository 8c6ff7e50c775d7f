import random

import numpy as np
import pytest
import torch

from common import checkpoint


def test_save_is_atomic_and_leaves_no_temp_file(tmp_path):
    path = checkpoint.save(tmp_path / "ck" / "step_1.pt", {"w": torch.arange(3)})
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["step_1.pt"]
    assert torch.equal(checkpoint.load(path)["w"], torch.arange(3))


def test_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    checkpoint.save(path, {"version": 1})

    def broken_save(obj, handle):
        handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(path, {"version": 2})
    monkeypatch.undo()
    assert checkpoint.load(path)["version"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


class Custom:
    pass


def test_load_refuses_pickled_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"obj": Custom()}, path)
    with pytest.raises(checkpoint.CheckpointError, match="evil.pt"):
        checkpoint.load(path)


def test_load_missing_file_names_it(tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match="nope.pt"):
        checkpoint.load(tmp_path / "nope.pt")


def test_rng_state_roundtrip_through_a_checkpoint(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    checkpoint.save(tmp_path / "rng.pt", {"rng": checkpoint.rng_state()})
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    checkpoint.set_rng_state(checkpoint.load(tmp_path / "rng.pt")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_numbered_sorts_by_integer_and_prune_keeps_last_k(tmp_path):
    for step in (5, 100, 20, 7):
        checkpoint.save(tmp_path / f"step_{step}.pt", {"step": step})
    (tmp_path / "best.pt").write_bytes(b"")
    assert [s for s, _ in checkpoint.numbered(tmp_path)] == [5, 7, 20, 100]
    removed = checkpoint.prune(tmp_path, keep_last=2)
    assert sorted(p.name for p in removed) == ["step_5.pt", "step_7.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "step_100.pt", "step_20.pt"]


def test_truncated_newest_checkpoint_falls_back_to_previous(tmp_path, caplog):
    checkpoint.save(tmp_path / "step_10.pt", {"step": 10, "w": torch.randn(1000)})
    checkpoint.save(tmp_path / "step_20.pt", {"step": 20, "w": torch.randn(1000)})
    data = (tmp_path / "step_20.pt").read_bytes()
    (tmp_path / "step_20.pt").write_bytes(data[: len(data) // 2])
    with caplog.at_level("WARNING"):
        path, state = checkpoint.load_latest_valid(tmp_path)
    assert path.name == "step_10.pt" and state["step"] == 10
    assert "step_20.pt" in caplog.text and "falling back" in caplog.text


def test_resolve_resume_variants(tmp_path):
    assert checkpoint.resolve_resume(None, tmp_path) == (None, None)
    assert checkpoint.resolve_resume("latest", tmp_path) == (None, None)  # nothing yet: fresh start
    checkpoint.save(tmp_path / "step_3.pt", {"step": 3})
    assert checkpoint.resolve_resume("latest", tmp_path)[1]["step"] == 3
    assert checkpoint.resolve_resume(str(tmp_path / "step_3.pt"), tmp_path)[1]["step"] == 3
    with pytest.raises(checkpoint.CheckpointError, match="missing.pt"):
        checkpoint.resolve_resume(str(tmp_path / "missing.pt"), tmp_path)
