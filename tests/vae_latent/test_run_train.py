"""run_train.sh: counts the visible GPUs itself and falls back to one CPU process."""
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_script(*args, env_extra=None):
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env_extra or {}))
    return subprocess.run(["bash", "vae_latent/run_train.sh", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240)


def test_falls_back_to_cpu_and_trains(frames_data, config_for, tmp_path):
    result = run_script("--config", config_for(frames_data), "--set", "trainer_params.max_steps=2",
                        env_extra={"CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "No GPU found: training on the CPU in one process" in result.stdout
    assert (tmp_path / "logs_vae/run/checkpoints/vae_final.pt").is_file()
    resumed = run_script("--config", config_for(frames_data), "--set", "trainer_params.max_steps=3",
                         "--resume", "auto", env_extra={"CUDA_VISIBLE_DEVICES": ""})
    assert resumed.returncode == 0 and "Resumed from" in resumed.stdout and "at step 2" in resumed.stdout


def test_more_gpus_than_visible_and_unknown_flags_are_errors():
    result = run_script("--gpus", "2", env_extra={"CUDA_VISIBLE_DEVICES": "0"})
    assert result.returncode == 2 and "only 1 GPU(s) are visible" in result.stderr
    result = run_script("--epochs", "3")
    assert result.returncode == 2 and "unknown argument '--epochs'" in result.stderr
