"""One launcher for every project's SLURM job: run the training command (usually torchrun), pass SLURM's
SIGUSR1/SIGTERM on to the training processes, wait while they save, then requeue the job if they stopped early.

    srun --kill-on-bad-exit=1 python scripts/slurm/launch.py -- python -m torch.distributed.run ... train.py ...

Why it is needed: SLURM signals every process of the job step. torchrun's elastic agent has no SIGUSR1 handler, so
SIGUSR1 (`#SBATCH --signal=USR1@120`) kills it at once (exit 138) and orphans the workers while they save; on
SIGTERM torchrun terminates the workers itself and kills them 30 s later, mid-save if the save is slow.
So the launcher
- starts the command with SIGUSR1 and SIGTERM ignored, and tells torchrun not to handle SIGTERM
  (TORCHELASTIC_SIGNALS_TO_HANDLE); ignored signals stay ignored across exec, and the training processes install
  their own handlers (common.preempt.PreemptionHandler), which replace that;
- on SIGUSR1 or SIGTERM sends the same signal to the training processes (torchrun's children, or the command itself
  when it is not torchrun), again every --resend_every seconds until they exit (a process that had not installed
  its handler yet ignored the first one);
- requeues the job (`scontrol requeue $SLURM_JOB_ID`, from the first node only) when a signal came and the training
  processes reported that it stopped them (PreemptionHandler writes the file named by $PREEMPT_STOPPED_FILE): a run
  that finished its training, or a job the user cancelled, is not requeued;
- exits with the command's status (0 after a clean save).
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FORWARDED = (signal.SIGUSR1, signal.SIGTERM)
STOPPED_FILE_ENV = "PREEMPT_STOPPED_FILE"  # common.preempt writes it when a signal stops the training


def say(message: str) -> None:
    print(f"[launch] {message}", file=sys.stderr, flush=True)


def is_torchrun(command: list[str]) -> bool:
    return "torch.distributed.run" in command or any(Path(part).name == "torchrun" for part in command[:3])


def children(pid: int) -> list[int]:
    """Direct children of `pid` (torchrun's workers: each runs in its own session, so a signal to our process
    group never reaches them)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process ended while we looked
            continue
        fields = stat.rsplit(")", 1)[1].split()  # the command name may contain spaces and brackets
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def ignore_forwarded_signals() -> None:
    """In the child, before exec: SIGUSR1/SIGTERM ignored (until the training process installs its handler)."""
    for sig in FORWARDED:
        signal.signal(sig, signal.SIG_IGN)


def job_was_cancelled(job_id: str) -> bool:
    """True when SLURM reports the job CANCELLED (scancel by the user): then a stop is no reason to requeue."""
    try:
        shown = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        say(f"could not ask scontrol for the job state ({exc}); assuming it was not cancelled")
        return False
    return "JobState=CANCELLED" in shown.stdout


def requeue() -> None:
    job_id = os.environ.get("SLURM_JOB_ID")
    if not job_id:
        say("the training stopped early and saved; not under SLURM (no SLURM_JOB_ID), so nothing to requeue")
        return
    if os.environ.get("SLURM_PROCID", "0") != "0":
        return  # one requeue per job: the launcher of the first node does it
    if job_was_cancelled(job_id):
        say(f"job {job_id} was cancelled: not requeued")
        return
    result = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True)
    if result.returncode == 0:
        say(f"requeued job {job_id}; the requeued job resumes from the checkpoint just saved")
    else:
        say(f"scontrol requeue {job_id} failed (exit {result.returncode}): {result.stderr.strip()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resend_every", type=float, default=10.0,
                        help="seconds between repeated signals while the training processes still run")
    parser.add_argument("--signal_target", choices=("auto", "children", "command"), default="auto",
                        help="who gets the signals: torchrun's children (auto for a torchrun command) or the "
                             "command itself")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the training command")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the training command after --")
    target = args.signal_target
    if target == "auto":
        target = "children" if is_torchrun(command) else "command"

    received: list[int] = []
    signal_handlers = {sig: signal.signal(sig, lambda signum, frame: received.append(signum)) for sig in FORWARDED}
    scratch = Path(tempfile.mkdtemp(prefix="launch_"))
    stopped_file = scratch / "stopped"
    env = dict(os.environ, **{STOPPED_FILE_ENV: str(stopped_file),
                              "TORCHELASTIC_SIGNALS_TO_HANDLE": "SIGINT,SIGHUP,SIGQUIT"})
    try:
        child = subprocess.Popen(command, env=env, preexec_fn=ignore_forwarded_signals)
        next_send = None
        while child.poll() is None:
            if received and (next_send is None or time.monotonic() >= next_send):
                sig = received[0]
                pids = children(child.pid) if target == "children" else [child.pid]
                for pid in pids:
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
                say(f"{signal.Signals(sig).name}: passed to {len(pids)} training process(es) {pids}; "
                    f"waiting for them to save")
                next_send = time.monotonic() + args.resend_every
            try:
                child.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
        status = child.returncode
        if received:
            if stopped_file.exists():
                requeue()
            else:
                say("the training ended without being stopped by the signal (it had finished): not requeued")
        return status if status >= 0 else 128 - status
    finally:
        for sig, handler in signal_handlers.items():
            signal.signal(sig, handler)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
