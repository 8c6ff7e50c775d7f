"""run_train.sh: counts the visible GPUs itself, falls back to one CPU process, passes --resume and --set through;
a SIGUSR1 (SLURM's warning before the time limit) makes training save a checkpoint and exit 0."""
import os
import signal
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CPU_ONLY = {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}


def run_script(*args, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run(["bash", "vae_latent/run_train.sh", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240)


@pytest.mark.slow
def test_cpu_fallback_sigusr1_checkpoint_and_resume(frames_data, config_for, tmp_path):
    config = config_for(frames_data, data_params={"frames_per_video": "all"}, trainer_params={"max_epochs": 1000})
    process = subprocess.Popen(["bash", "vae_latent/run_train.sh", "--config", str(config)], cwd=ROOT,
                               env=dict(os.environ, **CPU_ONLY), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    output = []
    for line in process.stdout:  # wait until training is under way, then signal as SLURM would
        output.append(line)
        if "step 3 |" in line:
            process.send_signal(signal.SIGUSR1)  # run_train.sh execs python: this is the training process
            break
    output.extend(process.stdout)
    text = "".join(output)
    assert process.wait(timeout=120) == 0, text[-2000:]
    assert "No GPU found: training on the CPU in one process" in text and "Stop requested" in text
    ckpt_dir = tmp_path / "logs_vae/run/checkpoints"
    ckpts = sorted(ckpt_dir.glob("step_*.pt"))
    assert len(ckpts) == 1 and not (ckpt_dir / "vae_final.pt").exists()
    stopped_at = int(ckpts[0].stem.split("_")[1])
    assert 3 <= stopped_at < 50

    resumed = run_script("--config", config, "--resume", "auto", "--set", f"trainer_params.max_steps={stopped_at + 2}",
                         env_extra=CPU_ONLY)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"at step {stopped_at} " in resumed.stdout and (ckpt_dir / "vae_final.pt").is_file()
    assert (ckpt_dir / f"step_{stopped_at + 2:08d}.pt").is_file()


def test_more_gpus_than_visible_and_unknown_flags_are_errors():
    result = run_script("--gpus", "2", env_extra={"CUDA_VISIBLE_DEVICES": "0"})
    assert result.returncode == 2 and "only 1 GPU(s) are visible" in result.stderr
    result = run_script("--epochs", "3")
    assert result.returncode == 2 and "unknown argument '--epochs'" in result.stderr
