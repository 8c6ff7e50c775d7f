import os
import random
import stat
from pathlib import Path

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


def test_load_refuses_pickled_objects_and_says_what_was_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"obj": Custom()}, path)
    with pytest.raises(checkpoint.CheckpointRefused, match=r"evil\.pt.*test_checkpoint\.Custom") as refused:
        checkpoint.load(path)
    assert "truncated" not in str(refused.value)
    (tmp_path / "half.pt").write_bytes(path.read_bytes()[:200])  # damaged, not refused
    with pytest.raises(checkpoint.CheckpointError, match="truncated or corrupt") as damaged:
        checkpoint.load(tmp_path / "half.pt")
    assert not isinstance(damaged.value, checkpoint.CheckpointRefused)
    (tmp_path / "text.pt").write_text("not a checkpoint\n")  # torch.load raises IndexError on this
    with pytest.raises(checkpoint.CheckpointError, match="text.pt"):
        checkpoint.load(tmp_path / "text.pt")


def test_refused_newest_checkpoint_stops_resume_instead_of_falling_back(tmp_path):
    checkpoint.save(tmp_path / "step_1.pt", {"step": 1})
    torch.save({"step": 2, "obj": Custom()}, tmp_path / "step_2.pt")
    with pytest.raises(checkpoint.CheckpointRefused, match="step_2.pt"):
        checkpoint.resolve_resume("latest", tmp_path)


def test_save_respects_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = checkpoint.save(tmp_path / "step_1.pt", {"step": 1})
        assert stat.S_IMODE(path.stat().st_mode) == 0o644  # group-readable (mkstemp would give 0600)
        os.umask(0o077)
        assert stat.S_IMODE(checkpoint.save(tmp_path / "step_2.pt", {}).stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_stale_temp_files_of_interrupted_saves_are_removed(tmp_path, monkeypatch):
    checkpoint.save(tmp_path / "step_1.pt", {"step": 1})

    def killed_midway(obj, handle):
        handle.write(b"partial")
        raise KeyboardInterrupt  # stands for the process dying: the temp file's clean-up is skipped below

    monkeypatch.setattr(torch, "save", killed_midway)
    monkeypatch.setattr(Path, "unlink", lambda self, missing_ok=False: None)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(tmp_path / "step_2.pt", {"step": 2})
    monkeypatch.undo()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "step_1.pt"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".step_2.pt.") and leftovers[0].endswith(".tmp")
    (tmp_path / ".hidden_notes.tmp").write_text("not ours")  # no random part: not a save's temp file
    removed = checkpoint.remove_stale_temp_files(tmp_path)
    assert [p.name for p in removed] == leftovers
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden_notes.tmp", "step_1.pt"]
    assert checkpoint.remove_stale_temp_files(tmp_path / "absent") == []


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
    for step in (5, 7, 20, 100):  # "step_100" < "step_20" < "step_7" as text
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
    for fresh in (None, "", "none", "None", "null", "false", "no"):
        assert checkpoint.resolve_resume(fresh, tmp_path) == (None, None), fresh
    for latest in ("latest", "auto", "last", "LATEST"):
        assert checkpoint.resolve_resume(latest, tmp_path) == (None, None)  # nothing yet: fresh start
        assert checkpoint.resolve_resume(latest, tmp_path / "not_created_yet") == (None, None)
    checkpoint.save(tmp_path / "step_3.pt", {"step": 3})
    checkpoint.save(tmp_path / "step_12.pt", {"step": 12})
    assert checkpoint.resolve_resume("latest", tmp_path)[1]["step"] == 12
    assert checkpoint.resolve_resume(str(tmp_path / "step_3.pt"), tmp_path)[1]["step"] == 3
    path, state = checkpoint.resolve_resume("3", tmp_path)  # a digit string is a step number
    assert path.name == "step_3.pt" and state["step"] == 3
    with pytest.raises(checkpoint.CheckpointError, match=r"numbered 7 .*present: \[3, 12\]"):
        checkpoint.resolve_resume("7", tmp_path)
    assert checkpoint.resolve_resume(str(tmp_path), None)[1]["step"] == 12  # a folder: its newest
    with pytest.raises(checkpoint.CheckpointError, match="missing.pt"):
        checkpoint.resolve_resume(str(tmp_path / "missing.pt"), tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(checkpoint.CheckpointError, match="no valid checkpoint"):
        checkpoint.resolve_resume(str(tmp_path / "empty"), tmp_path)


def test_resume_latest_without_a_run_folder_is_an_error():
    with pytest.raises(checkpoint.CheckpointError, match="needs a run folder"):
        checkpoint.resolve_resume("latest", None)
    with pytest.raises(checkpoint.CheckpointError, match="needs a run folder"):
        checkpoint.resolve_resume("12", None)
    assert checkpoint.resolve_resume("none", None) == (None, None)


def test_resume_follows_a_pointer_file_and_passes_over_a_truncated_newest(tmp_path):
    checkpoint.save(tmp_path / "step_10.pt", {"step": 10, "w": torch.randn(1000)})
    checkpoint.save(tmp_path / "step_20.pt", {"step": 20, "w": torch.randn(1000)})
    (tmp_path / "latest").write_text("step_10.pt\n")
    assert checkpoint.resolve_resume(str(tmp_path / "latest"), tmp_path)[1]["step"] == 10
    (tmp_path / "dangling").write_text("step_99.pt")
    with pytest.raises(checkpoint.CheckpointError, match="step_99.pt"):
        checkpoint.resolve_resume(str(tmp_path / "dangling"), tmp_path)
    data = (tmp_path / "step_20.pt").read_bytes()
    (tmp_path / "step_20.pt").write_bytes(data[: len(data) // 2])
    path, state = checkpoint.resolve_resume("latest", tmp_path)
    assert path.name == "step_10.pt" and state["step"] == 10


def test_resume_latest_compares_extra_names_by_their_step(tmp_path):
    checkpoint.save(tmp_path / "step_10.pt", {"step": 10})
    checkpoint.save(tmp_path / "last.pt", {"step": 13})  # saved at preemption, after step_10
    assert checkpoint.resolve_resume("latest", tmp_path, also=["last.pt"])[0].name == "last.pt"
    checkpoint.save(tmp_path / "step_20.pt", {"step": 20})
    assert checkpoint.resolve_resume("latest", tmp_path, also=["last.pt"])[0].name == "step_20.pt"
    assert checkpoint.resolve_resume("latest", tmp_path, pattern=None, also=["last.pt"])[0].name == "last.pt"
    checkpoint.save(tmp_path / "preempted.pt", {"step": 15})
    for names in (["last.pt", "preempted.pt"], ["preempted.pt", "last.pt"]):
        assert checkpoint.resolve_resume("latest", tmp_path, pattern=None, also=names)[0].name == "preempted.pt"
    assert checkpoint.parse_resume_spec(" 0012 ") == ("step", 12)
    assert checkpoint.parse_resume_spec("runs/a.pt") == ("path", Path("runs/a.pt"))


def _make_run(folder, steps, writer="this"):
    for step in steps:
        if writer == "this":
            checkpoint.save(folder / f"step_{step}.pt", {"step": step})
        else:  # another process (an earlier or another run) wrote it
            torch.save({"step": step}, folder / f"step_{step}.pt")


def test_prune_never_deletes_another_runs_files(tmp_path):
    _make_run(tmp_path, [100, 200, 300], writer="other")  # an old run left these
    _make_run(tmp_path, [1, 2, 3, 4])
    removed = checkpoint.prune(tmp_path, keep_last=2)
    assert sorted(p.name for p in removed) == ["step_1.pt", "step_2.pt"]
    assert [s for s, _ in checkpoint.numbered(tmp_path)] == [3, 4, 100, 200, 300]


def test_prune_after_resume_keeps_the_truncated_newest_and_the_file_just_written(tmp_path):
    _make_run(tmp_path, [10, 20, 30], writer="other")  # the run before the kill
    data = (tmp_path / "step_30.pt").read_bytes()
    (tmp_path / "step_30.pt").write_bytes(data[: len(data) // 2])
    path, _ = checkpoint.resolve_resume("latest", tmp_path)
    assert path.name == "step_20.pt"
    checkpoint.save(tmp_path / "step_25.pt", {"step": 25})
    removed = checkpoint.prune(tmp_path, keep_last=2)
    # step_10 and step_20 belong to the continued run (at or below the resumed one) and count; step_30 is newer
    # than the resumed checkpoint: not this run's, so it neither counts nor goes.
    assert [p.name for p in removed] == ["step_10.pt"]
    assert [s for s, _ in checkpoint.numbered(tmp_path)] == [20, 25, 30]
    checkpoint.save(tmp_path / "step_5.pt", {"step": 5})  # numbered below the others, but just written
    checkpoint.prune(tmp_path, keep_last=1, keep=[tmp_path / "step_25.pt"])
    assert [s for s, _ in checkpoint.numbered(tmp_path)] == [5, 25, 30]


def test_gather_and_restore_rng_states_with_named_generators():
    noise = torch.Generator().manual_seed(7)
    torch.manual_seed(1)
    states = checkpoint.gather_rng_states({"noise": noise})
    assert len(states) == 1 and "generators" in states[0]
    expected = (torch.rand(2), torch.rand(2, generator=noise))
    torch.manual_seed(5), noise.manual_seed(5)
    checkpoint.restore_rng_states(states, {"noise": noise})
    assert torch.equal(torch.rand(2), expected[0]) and torch.equal(torch.rand(2, generator=noise), expected[1])
    with pytest.raises(checkpoint.CheckpointError, match="'loader'"):
        checkpoint.restore_rng_states(states, {"loader": torch.Generator()})


def test_restore_rng_states_from_another_world_size_warns(caplog):
    torch.manual_seed(3)
    saved = [checkpoint.rng_state(), checkpoint.rng_state()]
    expected = torch.rand(1)
    with caplog.at_level("WARNING"):
        checkpoint.restore_rng_states(saved, rank=1)
    assert torch.equal(torch.rand(1), expected) and "2 rank(s), this run has 1" in caplog.text



def test_resume_config_check_names_breaking_changes_and_warns_about_others(caplog):
    saved = {"optim": {"lr": 1e-3, "betas": [0.9, 0.99]}, "data": {"batch_size": 8}, "log_every": 10, "seed": 0}
    same = {"optim": {"lr": 1e-3, "betas": [0.9, 0.99]}, "data": {"batch_size": 8}, "log_every": 10, "seed": 0}
    assert checkpoint.check_resume_config(saved, same, exact_keys=["optim", "data.batch_size", "seed"]) == {}
    changed = {"optim": {"lr": 5e-4, "betas": [0.9, 0.99]}, "data": {"batch_size": 16}, "log_every": 50, "seed": 0}
    with pytest.raises(checkpoint.ConfigChangeError,
                       match=r"data\.batch_size: 8 -> 16; optim\.lr: 0\.001 -> 0\.0005.*--allow_config_change"):
        checkpoint.check_resume_config(saved, changed, exact_keys=["optim", "data.batch_size", "seed"])
    with caplog.at_level("WARNING"):
        changes = checkpoint.check_resume_config(saved, changed, exact_keys=["optim.*", "data.batch_size"],
                                                 allow_change=True)
    assert changes == {"data.batch_size": (8, 16), "log_every": (10, 50), "optim.lr": (1e-3, 5e-4)}
    assert "log_every: 10 -> 50" in caplog.text and "--allow_config_change given" in caplog.text
    added = dict(same, new_option=True)
    with pytest.raises(checkpoint.ConfigChangeError, match="new_option: '<absent>' -> True"):
        checkpoint.check_resume_config(saved, added, exact_keys=["new_option"])
    assert checkpoint.check_resume_config(saved, dict(changed, seed=1), exact_keys=[],
                                          ignore=["optim", "data", "log_every", "seed"]) == {}


def test_fresh_run_refuses_a_folder_with_checkpoints(tmp_path):
    checkpoint.check_fresh_run_folder(tmp_path / "new", resuming=False)  # absent: fine
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "log.txt").write_text("")
    checkpoint.check_fresh_run_folder(tmp_path / "run", resuming=False)  # no checkpoint in it: fine
    checkpoint.save(tmp_path / "run" / "checkpoints" / "step_5.pt", {"step": 5})
    with pytest.raises(checkpoint.RunFolderInUse, match=r"run already holds 1 checkpoint.*checkpoints/step_5\.pt"):
        checkpoint.check_fresh_run_folder(tmp_path / "run", resuming=False)
    checkpoint.check_fresh_run_folder(tmp_path / "run", resuming=True)
