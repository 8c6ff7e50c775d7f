"""scripts/slurm/launch.py without SLURM: a fake `scontrol` on PATH records its calls, and the test plays srun's part
by sending SIGUSR1 to the launcher's process group while training runs.

For every project (commands in tests/slurm/projects.py) through its real entry point: the signalled run saves,
exits 0 and requeues the job; the resumed run finishes without requeueing; its final checkpoint equals an
uninterrupted run's in every tensor. torchrun's workers run in sessions of their own, so only the launcher can pass
the signal on: the test checks that path.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from common import checkpoint
from tests.slurm.projects import PROJECTS, STEPS

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ROOT / "scripts" / "slurm" / "launch.py"
TINY_TRAIN = ROOT / "tests" / "common" / "tiny_train.py"
JOB_ID = "4242"
FAKE_SCONTROL = """#!/bin/sh
echo "$*" >> "$SCONTROL_LOG"
if [ "$1" = show ]; then echo "JobId=$4 JobState=${FAKE_JOB_STATE:-RUNNING}"; fi
"""


@pytest.fixture
def slurm_env(tmp_path):
    """Environment of a job step on node 0, with the fake scontrol first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(FAKE_SCONTROL)
    (bin_dir / "scontrol").chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", SCONTROL_LOG=str(tmp_path / "scontrol.log"),
               SLURM_JOB_ID=JOB_ID, SLURM_PROCID="0", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",
               PYTHONPATH=str(ROOT))
    env.pop("RANK", None), env.pop("WORLD_SIZE", None)
    return env


def scontrol_calls(env) -> list[str]:
    log = Path(env["SCONTROL_LOG"])
    return log.read_text().splitlines() if log.is_file() else []


def command(ranks: int, script_and_args: list[str]) -> list[str]:
    """What an sbatch template runs: torchrun for several ranks, the script alone for one."""
    if ranks == 1:
        return [sys.executable, *script_and_args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}",
            *script_and_args]


def start(cmd: list[str], env: dict, cwd: Path) -> subprocess.Popen:
    """The launcher in a process group of its own (as srun starts each task)."""
    return subprocess.Popen([sys.executable, str(LAUNCH), "--resend_every", "1", "--", *cmd], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def descendants(pid: int) -> list[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                continue
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def read_until(process: subprocess.Popen, pattern: str, lines: list[str], timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"process ended before printing {pattern!r}:\n" + "".join(lines[-60:]))
        lines.append(line)
        if re.search(pattern, line):
            return
    raise AssertionError(f"no {pattern!r} within {timeout} s:\n" + "".join(lines[-60:]))


def preempt(process: subprocess.Popen, ready: str) -> str:
    """Wait for `ready`, then deliver SIGUSR1 as srun does (to the launcher's process group) while the training
    processes are held still, so the signal lands at that step however loaded the machine is. Returns the output."""
    lines: list[str] = []
    read_until(process, ready, lines)
    held = descendants(process.pid)
    for pid in held:
        os.kill(pid, signal.SIGSTOP)
    try:
        os.killpg(process.pid, signal.SIGUSR1)
        read_until(process, r"\[launch\] SIGUSR1: passed to [1-9]", lines, timeout=30)
    finally:
        for pid in held:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
    lines.extend(process.stdout)
    process.wait(timeout=240)
    return "".join(lines)


def run_to_end(cmd: list[str], env: dict, cwd: Path) -> tuple[int, str]:
    process = start(cmd, env, cwd)
    output = process.communicate(timeout=400)[0]
    return process.returncode, output


def tensors(value, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor of a nested checkpoint, by its path (model, optimizer, scheduler, EMA, RNG states, ...)."""
    if torch.is_tensor(value):
        return {prefix: value}
    found = {}
    if isinstance(value, dict):
        for key, item in value.items():
            found.update(tensors(item, f"{prefix}/{key}"))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found.update(tensors(item, f"{prefix}[{index}]"))
    return found


def assert_same_tensors(expected_path: Path, actual_path: Path) -> int:
    expected = tensors(torch.load(expected_path, map_location="cpu", weights_only=True))
    actual = tensors(torch.load(actual_path, map_location="cpu", weights_only=True))
    assert expected.keys() == actual.keys()
    different = [key for key in expected if not torch.equal(expected[key], actual[key])]
    assert not different, f"{len(different)} of {len(expected)} tensors differ, e.g. {different[:8]}"
    return len(expected)


# ------------------------------------------------------------------------------- the launcher on tests/common
@pytest.mark.slow
def test_signal_is_passed_to_torchrun_workers_saved_requeued_and_resumed_exactly(tmp_path, slurm_env):
    def train(run_dir, *extra):
        return command(2, [str(TINY_TRAIN), "--run_dir", str(run_dir), "--steps", "40", *extra])

    rc, output = run_to_end(train(tmp_path / "straight"), slurm_env, ROOT)
    assert rc == 0 and scontrol_calls(slurm_env) == [], output[-3000:]

    run_dir = tmp_path / "split"
    process = start(train(run_dir, "--step_sleep", "0.05"), slurm_env, ROOT)
    output = preempt(process, r"step 5 loss")
    assert process.returncode == 0, output[-3000:]  # torchrun survived (it dies of SIGUSR1: exit 138)
    assert "Preempted: saved at step" in (run_dir / "log.txt").read_text(), output[-3000:]
    assert scontrol_calls(slurm_env) == [f"show job -o {JOB_ID}", f"requeue {JOB_ID}"], output[-3000:]
    saved = max(step for step, _ in checkpoint.numbered(run_dir / "checkpoints"))
    assert 5 <= saved < 40

    rc, output = run_to_end(train(run_dir, "--resume", "latest"), slurm_env, ROOT)  # the requeued job
    assert rc == 0 and scontrol_calls(slurm_env).count(f"requeue {JOB_ID}") == 1, output[-3000:]
    final = "checkpoints/step_000040.pt"
    assert assert_same_tensors(tmp_path / "straight" / final, run_dir / final) > 0


def test_finished_and_cancelled_runs_are_not_requeued(tmp_path, slurm_env):
    rc, output = run_to_end(command(1, [str(TINY_TRAIN), "--run_dir", str(tmp_path / "a"), "--steps", "3"]),
                            slurm_env, ROOT)
    assert rc == 0 and scontrol_calls(slurm_env) == [], output[-2000:]
    cancelled = dict(slurm_env, FAKE_JOB_STATE="CANCELLED")
    process = start(command(1, [str(TINY_TRAIN), "--run_dir", str(tmp_path / "b"), "--steps", "400",
                                "--step_sleep", "0.02"]), cancelled, ROOT)
    output = preempt(process, r"step 3 loss")
    assert process.returncode == 0, output[-2000:]
    assert scontrol_calls(slurm_env) == [f"show job -o {JOB_ID}"] and "was cancelled: not requeued" in output


def test_a_signal_that_did_not_stop_the_training_does_not_requeue(tmp_path, slurm_env):
    # The command ignores the signal (as a run past its last step does) and ends normally: no stop file, no requeue.
    process = start([sys.executable, "-c", "import time; print('step 1', flush=True); time.sleep(1.5)"],
                    slurm_env, ROOT)
    output = preempt(process, r"step 1")
    assert process.returncode == 0 and scontrol_calls(slurm_env) == [], output
    assert "ended without being stopped by the signal" in output


def test_a_failing_command_passes_its_exit_status(tmp_path, slurm_env):
    rc, _ = run_to_end([sys.executable, "-c", "import sys; sys.exit(3)"], slurm_env, ROOT)
    assert rc == 3 and scontrol_calls(slurm_env) == []


# ------------------------------------------------------------------------------- every project, real entry points
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PROJECTS))
def test_project_preempted_through_the_launcher_resumes_exactly(name, tmp_path, slurm_env):
    project, steps = PROJECTS[name], STEPS[name]
    data = tmp_path / "data"
    for synth in project.synth(data):
        subprocess.run(synth, cwd=ROOT, env=slurm_env, check=True, capture_output=True, timeout=300)

    straight_dir, split_dir = tmp_path / "straight", tmp_path / "split"
    rc, output = run_to_end(command(project.ranks, project.train(data, straight_dir, steps, False)), slurm_env, ROOT)
    assert rc == 0 and scontrol_calls(slurm_env) == [], output[-4000:]  # finished: no requeue

    process = start(command(project.ranks, project.train(data, split_dir, steps, False)), slurm_env, ROOT)
    output = preempt(process, project.ready)
    assert process.returncode == 0, output[-4000:]
    assert scontrol_calls(slurm_env) == [f"show job -o {JOB_ID}", f"requeue {JOB_ID}"], output[-4000:]
    # (the requeue itself shows that the signal stopped the training: PreemptionHandler wrote the launcher's file)

    rc, output = run_to_end(command(project.ranks, project.train(data, split_dir, steps, True)), slurm_env, ROOT)
    assert rc == 0, output[-4000:]
    assert scontrol_calls(slurm_env).count(f"requeue {JOB_ID}") == 1  # the resumed run finished: no new requeue
    assert assert_same_tensors(project.final(straight_dir), project.final(split_dir)) > 0
