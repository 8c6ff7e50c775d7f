"""The shadow guide (tests/guides/text/shadow.txt), command by command in its order, run from shadow/ as a user who
copied it would, on a small rendered set in the guide's layout (img_00001.png names, float metadata, a macOS
.DS_Store in objects/). Only paths and sizes are substituted. Lines that cannot work here (the HF benchmark and
SDXL downloads, an A100) must fail with a message that says what to do instead.
"""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import torch

from common import checkpoint
from shadow.synth import write_dataset
from tests.guides.conftest import ROOT, GuideCommand, assert_quotes_guide, guide_lines, run_guide_command

PROJECT = "shadow"

OPTION_1 = GuideCommand(7, "python train.py --dataset_type custom --data_dir /path/to/your/1500/samples "
                           "--image_size 512 --batch_size 8 --mixed_precision --gradient_checkpointing "
                           "--max_iterations 5000 --save_every 500 --eval_every 500 --log_every 50",
                        (("/path/to/your/1500/samples", "{data}"), ("--image_size 512", "--image_size 32"),
                         ("--batch_size 8", "--batch_size 4"), ("--max_iterations 5000", "--max_iterations {steps}"),
                         ("--save_every 500", "--save_every 3"), ("--eval_every 500", "--eval_every 3"),
                         ("--log_every 50", "--log_every 1")))
OPTION_2 = GuideCommand(29, "python train.py --dataset_type custom --data_dir /path/to/your/1500/samples "
                            "--image_size 1024 --batch_size 2 --mixed_precision --gradient_checkpointing "
                            "--gradient_accumulation 4 --max_iterations 5000 --save_every 500 --eval_every 500 "
                            "--log_every 50",
                        (("/path/to/your/1500/samples", "{data}"), ("--image_size 1024", "--image_size 32"),
                         ("--max_iterations 5000", "--max_iterations {steps}"), ("--save_every 500", "--save_every 1"),
                         ("--eval_every 500", "--eval_every 2"), ("--log_every 50", "--log_every 1")))
DTYPE_CHECK = GuideCommand(133, "python test_dtype_fixes.py")
NVIDIA_SMI = GuideCommand(161, "nvidia-smi")
TAIL_LOG = GuideCommand(200, "tail -f checkpoints/training.log")
RESUME = GuideCommand(328, "python train.py --resume_from checkpoints/latest_model.pt [... other args ...]",
                      (("[... other args ...]", "{other_args}"),))
SCALE_UP = GuideCommand(345, "python train.py --dataset_type benchmark --image_size 1024 --batch_size 2 "
                             "--gradient_accumulation 4 --max_iterations 150000 --mixed_precision "
                             "--gradient_checkpointing")


def guide_block(first: int, last: int) -> str:
    """Lines first..last (1-based, inclusive) of the guide: a `python -c "..."` command over several lines."""
    return "\n".join(guide_lines(PROJECT)[first - 1:last])


@pytest.fixture(scope="module")
def guide_data(tmp_path_factory):
    """24 rendered samples in the guide's layout: img_00001.png ... with float light parameters."""
    rendered = write_dataset(tmp_path_factory.mktemp("rendered") / "data", 24, image_size=32)
    data = tmp_path_factory.mktemp("guide") / "samples"
    metadata = json.loads((rendered / "metadata.json").read_text())
    renamed = {}
    for number, stem in enumerate(sorted(metadata), start=1):
        name = f"img_{number:05d}"
        for part in ("objects", "masks", "shadows"):
            (data / part).mkdir(parents=True, exist_ok=True)
            shutil.copy(rendered / part / f"{stem}.png", data / part / f"{name}.png")
        renamed[name] = {key: float(value) for key, value in metadata[stem].items()}
    (data / "metadata.json").write_text(json.dumps(renamed, indent=2))
    (data / "objects" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # what a Mac leaves in every folder
    return data


@pytest.fixture
def checkpoints_folder():
    """shadow/checkpoints, where the guide's commands write (their default --output_dir); removed afterwards."""
    folder = ROOT / PROJECT / "checkpoints"
    if folder.exists():
        pytest.fail(f"{folder} exists already (a run of yours?); move it away: the guide's commands write there.")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_dataset_check_prints_batches_and_shapes(guide_data):
    # Lines 96-114: the Pre-Training Checklist's `python -c` snippet (it uses torch without importing it).
    block = guide_block(96, 114)
    assert block.startswith('python -c "\nfrom controllable_shadow.data import create_dataloaders') and block.endswith('"')
    command = block.replace("/path/to/your/data", str(guide_data)).replace("image_size=512", "image_size=32")
    out = run_guide_command(PROJECT, command, timeout=300).stdout
    # 24 samples: 22 train / 2 validate at batch 2 (the guide's numbers are for 1500 samples)
    assert "Train batches: 11" in out and "Val batches: 1" in out
    for line in ("object_image: torch.Size([2, 3, 32, 32]), dtype=torch.float32",
                 "mask: torch.Size([2, 1, 32, 32]), dtype=torch.float32",
                 "shadow_map: torch.Size([2, 1, 32, 32]), dtype=torch.float32",
                 "theta: torch.Size([2]), dtype=torch.float32", "phi: torch.Size([2]), dtype=torch.float32",
                 "size: torch.Size([2]), dtype=torch.float32"):
        assert line in out, out


@pytest.mark.slow
def test_dtype_check_passes_with_every_gradient_non_zero():
    assert_quotes_guide(PROJECT, DTYPE_CHECK)
    out = run_guide_command(PROJECT, DTYPE_CHECK.command(), timeout=300).stdout
    assert "TESTING DTYPE FIXES" in out and "✓ Model created" in out and "7. Testing backward pass..." in out
    counts = [line.split("Parameters with gradients: ")[1].split("/") for line in out.splitlines()
              if "Parameters with gradients: " in line]
    assert counts and all(a == b for a, b in counts), out
    assert "✓ Backward pass works" in out and "ALL DTYPE TESTS PASSED! ✅" in out


def test_gpu_checks_report_what_this_machine_has():
    assert_quotes_guide(PROJECT, NVIDIA_SMI)
    smi = run_guide_command(PROJECT, NVIDIA_SMI.command(), expect_success=False)
    if shutil.which("nvidia-smi") is None:
        assert smi.returncode == 127 and "nvidia-smi: command not found" in smi.stderr
    # Lines 163-170: the CUDA check; on a CPU machine torch says there is no GPU after printing the versions.
    block = guide_block(163, 170)
    assert block.startswith('python -c "\nimport torch')
    result = run_guide_command(PROJECT, block, expect_success=torch.cuda.is_available(), timeout=120)
    assert f"CUDA available: {torch.cuda.is_available()}" in result.stdout
    if not torch.cuda.is_available():
        assert result.returncode != 0 and "NVIDIA" in result.stderr  # torch: "...check that you have an NVIDIA GPU"


@pytest.mark.slow
def test_training_options_log_tail_and_resume(guide_data, checkpoints_folder):
    for entry in (OPTION_1, OPTION_2, TAIL_LOG, RESUME):
        assert_quotes_guide(PROJECT, entry)

    # Option 1 (line 7): bare --mixed_precision (bf16) and --gradient_checkpointing.
    run_guide_command(PROJECT, OPTION_1.command(data=str(guide_data), steps="6"), timeout=600)
    config = json.loads((checkpoints_folder / "training_config.json").read_text())
    assert config["mixed_precision"] == "bf16" and config["gradient_checkpointing"] is True
    assert config["lr"] == 1e-3  # the unet backbone's default (the paper's 1e-5 is SDXL's)
    for name in ("training_config.json", "training.log", "latest_model.pt", "best_model.pt", "checkpoint_6.pt"):
        assert (checkpoints_folder / name).is_file(), name
    log = (checkpoints_folder / "training.log").read_text()
    assert "step 6/6 loss=" in log and "loss_t1=" in log and "step 6 validation: val/loss=" in log
    # The guide offers option 2 as the alternative: a new run, so it gets a clean folder.
    shutil.rmtree(checkpoints_folder)

    # Option 2 (line 29): accumulation 4 x batch 2.
    run_guide_command(PROJECT, OPTION_2.command(data=str(guide_data), steps="2"), timeout=600)
    log = (checkpoints_folder / "training.log").read_text()
    assert "effective batch size: 8 (2 per process x 4 accumulation x 1 processes)" in log
    assert checkpoint.load(checkpoints_folder / "checkpoint_2.pt")["batches_done"] == 8

    # Line 200: `tail -f` follows the log until stopped (here after 3 s).
    tail = subprocess.run(["bash", "-c", f"timeout 3 {TAIL_LOG.command()}"], cwd=ROOT / PROJECT,
                          capture_output=True, text=True, timeout=30)
    assert tail.returncode == 124 and "step 2/2 loss=" in tail.stdout

    # Line 328: resume with the run's own arguments, now to 4 steps.
    other_args = OPTION_2.command(data=str(guide_data), steps="4").removeprefix("python train.py ")
    result = run_guide_command(PROJECT, RESUME.command(other_args=other_args), timeout=600)
    assert "Resumed from checkpoints/latest_model.pt at step 2" in result.stdout
    assert checkpoint.load(checkpoints_folder / "latest_model.pt")["step"] == 4


def test_scaling_to_the_benchmark_says_where_the_tar_must_be():
    # Line 345 names no --data_dir: the benchmark cannot be downloaded, so the message asks for the local tar.
    assert_quotes_guide(PROJECT, SCALE_UP)
    result = run_guide_command(PROJECT, SCALE_UP.command(), expect_success=False, timeout=120)
    assert result.returncode == 2
    assert ("--data_dir is required: the local path of controllable-shadow-generation-benchmark.tar "
            "(it is never downloaded)") in result.stderr


def test_sdxl_is_never_downloaded(guide_data):
    # Line 364: "Model will download SDXL weights" - here the weights come from a local folder or not at all.
    assert "Model will download SDXL weights" in guide_lines(PROJECT)[363]
    result = run_guide_command(PROJECT, f"python train.py --data_dir {guide_data} --backbone sdxl",
                               expect_success=False, timeout=120)
    assert result.returncode == 2 and "--backbone sdxl needs --pretrained_path DIR" in result.stderr
    assert "never downloaded" in result.stderr
