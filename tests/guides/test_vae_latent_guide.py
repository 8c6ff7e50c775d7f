"""The vae_latent guide ("VAE Training Setup - Summary", tests/guides/text/vae_latent.txt), command by command.

Every command is the guide's own text (checked against the guide at the line given), run from vae_latent/ with only
paths and sizes substituted: the guide's step 2 ("update data path in config_vae_sthv2.yaml") is an edited copy of
the spec config with the synthetic frames' path, a run folder under the test's tmp folder and a 16 px model.
Lines that cannot work as written here assert the message that says what to do instead.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from common import checkpoint
from tests.guides.conftest import (ROOT, GuideCommand, assert_quotes_guide, guide_env, guide_lines,
                                   run_guide_command)
from tests.vae_latent.conftest import make_frames

PROJECT = "vae_latent"
TINY = {"model_params": {"latent_dim": 4, "hidden_dims": [8, 16], "image_size": 16},
        "data_params": {"train_batch_size": 4, "val_batch_size": 4, "num_workers": 0, "frames_per_video": "all",
                        "val_fraction": 0.2},
        "trainer_params": {"max_epochs": 2, "log_every_n_steps": 2},
        "logging_params": {"save_every_n_steps": 4, "log_images_every_n_steps": 4}}
LAQ_TINY = {"image_size": 32, "patch_size": 4, "dim": 32, "heads": 2, "dim_head": 16, "spatial_depth": 1,
            "temporal_depth": 1, "quant_dim": 8, "codebook_size": 4, "code_seq_len": 4}

CONFIG = ("config_vae_sthv2.yaml", "{config}")
LOGS = ("logs_vae/", "{logs}/")
PIP_INSTALL = GuideCommand(69, "pip install -r requirements.txt")
TEST_SETUP = GuideCommand(75, "python test_setup.py")
TRAIN_DDP = GuideCommand(78, "python train_ddp.py --config config_vae_sthv2.yaml", (CONFIG,))
TENSORBOARD = GuideCommand(81, "tensorboard --logdir logs_vae/VanillaVAE_sthv2", (LOGS,))
COMPARE_QUICK = GuideCommand(84, "python compare_with_laq.py --vae logs_vae/VanillaVAE_sthv2/checkpoints/vae_final.pt "
                                 "--laq ../laq/results/model.pt --image test_image.jpg",
                             (LOGS, ("test_image.jpg", "{image}")))
COMPARE_QUICK_WITH_LAQ = GuideCommand(COMPARE_QUICK.line, COMPARE_QUICK.text,
                                      (LOGS, ("../laq/results/model.pt", "{laq}"), ("test_image.jpg", "{image}")))
COMPARE_OUTPUT = GuideCommand(235, "python compare_with_laq.py --vae logs_vae/VanillaVAE_sthv2/checkpoints/vae_final.pt "
                                   "--laq ../laq/results/model.pt --image /path/to/test/image.jpg "
                                   "--output comparison_results",
                              (LOGS, ("../laq/results/model.pt", "{laq}"), ("/path/to/test/image.jpg", "{image}"),
                               ("--output comparison_results", "--output {out}")))
TEST_SETUP_AGAIN = GuideCommand(256, "python test_setup.py")
TRAIN_DDP_AGAIN = GuideCommand(262, "python train_ddp.py --config config_vae_sthv2.yaml", (CONFIG,))
TRAIN_SINGLE = GuideCommand(265, "python train_single_gpu.py --config config_vae_sthv2.yaml", (CONFIG,))
TENSORBOARD_AGAIN = GuideCommand(270, "tensorboard --logdir logs_vae/VanillaVAE_sthv2", (LOGS,))
COMPARE_PLACEHOLDERS = GuideCommand(275, "python compare_with_laq.py --vae VAE_CHECKPOINT --laq LAQ_CHECKPOINT "
                                         "--image TEST_IMAGE",
                                    (("VAE_CHECKPOINT", "{vae}"), ("LAQ_CHECKPOINT", "{laq}"),
                                     ("TEST_IMAGE", "{image}")))
TABLE = [PIP_INSTALL, TEST_SETUP, TRAIN_DDP, TENSORBOARD, COMPARE_QUICK, COMPARE_QUICK_WITH_LAQ, COMPARE_OUTPUT, TEST_SETUP_AGAIN,
         TRAIN_DDP_AGAIN, TRAIN_SINGLE, TENSORBOARD_AGAIN, COMPARE_PLACEHOLDERS]


def edited_config(path: Path, data: Path, logs: Path) -> Path:
    """The guide's step 2 on a copy of the spec config: the data path, the run folder's parent, tiny sizes."""
    config = yaml.safe_load((ROOT / PROJECT / "config_vae_sthv2.yaml").read_text())
    for section, values in TINY.items():
        config[section].update(values)
    config["data_params"]["data_path"] = str(data)
    config["logging_params"]["save_dir"] = str(logs)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, str]:
    """Synthetic frames, the edited config, a trained run from the guide's training command, a test image and a
    LAQ checkpoint where LAQ's training writes it."""
    root = tmp_path_factory.mktemp("vae_guide")
    data = make_frames(root / "sthv2", n_videos=6, n_frames=4, size=24)
    values = {"config": str(edited_config(root / "config.yaml", data, root / "logs_vae")), "logs": str(root / "logs_vae"),
              "image": str(data / "frames/1000/img_00001.jpg"), "out": str(root / "comparison_results")}
    laq = root / "laq/runs/laq/tiny/2026-01-01_00-00-00/checkpoints/last.pt"
    from laq.models import build_model as build_laq
    torch.manual_seed(0)
    checkpoint.save(laq, {"model": build_laq(LAQ_TINY).state_dict(), "config": {"model": LAQ_TINY}})
    values["laq"] = str(laq)
    values["train_output"] = run_guide_command(PROJECT, TRAIN_DDP.command(**values)).stdout
    values["vae"] = str(root / "logs_vae/VanillaVAE_sthv2/checkpoints/vae_final.pt")
    return values


@pytest.fixture
def project_cwd_outputs():
    """The guide's compare commands without --output write vae_latent/comparison_results: keep a user's folder of
    that name aside while the test runs, and remove what the test wrote."""
    target = ROOT / PROJECT / "comparison_results"
    aside = target.with_name(f"comparison_results.kept_by_guide_test_{os.getpid()}")
    if target.exists():
        target.rename(aside)
    yield target
    shutil.rmtree(target, ignore_errors=True)
    if aside.exists():
        aside.rename(target)


@pytest.mark.parametrize("entry", TABLE, ids=lambda e: f"line{e.line}")
def test_table_quotes_the_guide(entry):
    assert_quotes_guide(PROJECT, entry)


def test_file_structure_of_the_guide_exists():
    lines = guide_lines(PROJECT)[9:25]  # the tree under "## File Structure"
    names = [line.split("──")[1].split()[0] for line in lines if "──" in line]
    assert len(names) == 12 and "SUMMARY.md" in names and "requirements.txt" in names
    for name in names:
        path = ROOT / PROJECT / name
        assert path.is_file(), name
        if name == "requirements.txt":  # the repository's one lock file, so both installs give the same set
            assert "-r ../requirements.txt" in path.read_text().splitlines()
        elif name.endswith(".md"):
            assert path.stat().st_size > 2000, name  # real documents, not stubs
        else:  # scripts and configs: at least a docstring or header comment and their code
            assert path.stat().st_size > 300, name


def test_guide_configuration_blocks_are_the_defaults():
    """The YAML of "Configuration Options" (lines 130-174), as written, loads and equals the defaults (the data
    path aside, which the guide leaves as a placeholder)."""
    from vae_latent.vae_config import load_config

    lines, merged = guide_lines(PROJECT), {}
    for start in (131, 141, 152, 169):  # the first line inside each ```yaml block
        end = lines.index("```", start)
        for section, values in yaml.safe_load("\n".join(lines[start - 1:end])).items():
            merged.setdefault(section, {}).update(values)
    assert set(merged) == {"model_params", "data_params", "exp_params", "trainer_params", "logging_params"}
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"guide_config_{os.getpid()}.yaml"
    path.write_text(yaml.safe_dump(merged))
    try:
        from_guide = load_config(path)
    finally:
        path.unlink()
    defaults = load_config()
    for section, values in merged.items():
        for key, value in values.items():
            assert from_guide[section][key] == value, f"{section}.{key}"
            if (section, key) != ("data_params", "data_path"):
                expected = defaults["model_params"]["image_size"] if (section, key) == ("data_params", "image_size") \
                    and defaults[section][key] is None else defaults[section][key]
                assert expected == value, f"default {section}.{key} = {defaults[section][key]!r}, guide {value!r}"


def test_architecture_shapes_of_the_guide():
    """Lines 95-114: the encoder and decoder shapes of the spec model."""
    import re

    from vae_latent.vae_config import load_config
    from vae_latent.vanilla_vae_model import build_model

    shapes = [tuple(map(int, m)) for m in re.findall(r"→ (?:Output )?\((\d+), (\d+), (\d+)\)", "\n".join(guide_lines(PROJECT)[93:114]))]
    with torch.device("meta"):
        model = build_model(load_config()["model_params"])
        x, found = torch.empty(1, 3, 256, 256), []
        for stage in model.encoder:
            x = stage(x)
            found.append(tuple(x.shape[1:]))
        x = model.decoder_input(torch.empty(1, model.latent_dim)).view(-1, *model.bottom_shape)
        found.append(tuple(x.shape[1:]))  # the guide's "Reshape"
        for stage in [*model.decoder, model.final_layer[0]]:
            x = stage(x)
            found.append(tuple(x.shape[1:]))
        found.append(tuple(model.final_layer(model.decoder(model.decoder_input(torch.empty(1, 256)).view(
            -1, *model.bottom_shape))).shape[1:]))
    assert found == shapes and model.latent_dim == 256  # "μ (256), log σ² (256)"


def test_line69_pip_install_reads_the_root_pins():
    # PIP_DRY_RUN / PIP_NO_INDEX: pip resolves the guide's command against this venv and changes nothing.
    result = run_guide_command(PROJECT, PIP_INSTALL.command(), env={"PIP_DRY_RUN": "1", "PIP_NO_INDEX": "1",
                                                                    "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert "from -r ../requirements.txt" in result.stdout and "Would install" not in result.stdout


@pytest.mark.slow
def test_line75_test_setup_before_the_data_path_is_set_says_what_to_edit():
    for entry in (TEST_SETUP, TEST_SETUP_AGAIN):
        assert entry.command() == "python test_setup.py"
    result = run_guide_command(PROJECT, TEST_SETUP.command(), expect_success=False)
    assert result.returncode == 1
    assert "✗ data path: Data folder not found: data/sthv2" in result.stdout
    assert "set it with --set data_params.data_path=DIR" in result.stdout
    assert "✓ config" in result.stdout and "✓ forward/backward: 62.98M parameters" in result.stdout


def test_line78_train_ddp_runs_one_process_on_the_cpu_and_writes_the_run(workspace):
    run = Path(workspace["logs"]) / "VanillaVAE_sthv2"
    assert "1 process(es) on cpu" in workspace["train_output"]
    assert {"vae_final.pt", "vae_best.pt"} <= {p.name for p in (run / "checkpoints").iterdir()}
    metrics = (run / "metrics.json").read_text()
    for key in ("val/mse", "val/psnr", "val/kld", "val/pca_mse", "val/mean_image_mse"):
        assert f'"{key}"' in metrics
    assert list(run.glob("events.out.tfevents.*")) and (run / "config.yaml").is_file()


def test_line262_training_again_into_the_same_run_folder_is_refused(workspace):
    result = run_guide_command(PROJECT, TRAIN_DDP_AGAIN.command(**workspace), expect_success=False)
    assert result.returncode == 1
    assert "checkpoint(s) of an earlier run" in result.stderr and "--resume auto" in result.stderr


@pytest.mark.slow
def test_line265_train_single_gpu(workspace, tmp_path):
    config = edited_config(tmp_path / "single.yaml", Path(workspace["config"]).parent / "sthv2", tmp_path / "logs")
    result = run_guide_command(PROJECT, TRAIN_SINGLE.command(config=str(config)))
    assert "Finished at step" in result.stdout
    assert (tmp_path / "logs/VanillaVAE_sthv2/checkpoints/vae_final.pt").is_file()


@pytest.mark.slow
def test_line81_tensorboard_serves_the_run_folder(workspace):
    assert TENSORBOARD_AGAIN.command(**workspace) == TENSORBOARD.command(**workspace)
    process = subprocess.Popen(["bash", "-c", TENSORBOARD.command(**workspace)], cwd=ROOT / PROJECT,
                               env=guide_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    output, deadline = [], time.time() + 120
    try:
        for line in process.stdout:
            output.append(line)
            if "http://" in line or "could not bind" in line or time.time() > deadline:
                break
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    text = "".join(output)
    assert "TensorBoard" in text and "http://localhost:" in text, text[-2000:]


def test_line84_the_guides_laq_path_names_where_laq_writes(workspace):
    result = run_guide_command(PROJECT, COMPARE_QUICK.command(**workspace), expect_success=False)
    assert result.returncode == 2 and "LAQ checkpoint not found: ../laq/results/model.pt" in result.stderr
    assert "<run folder>/checkpoints/last.pt" in result.stderr
    assert not (ROOT / PROJECT / "comparison_results").exists()  # nothing written before the error


@pytest.mark.slow
def test_line84_and_line275_with_a_real_laq_checkpoint_write_comparison_results(workspace, project_cwd_outputs):
    for command in (COMPARE_QUICK_WITH_LAQ.command(**workspace), COMPARE_PLACEHOLDERS.command(**workspace)):
        shutil.rmtree(project_cwd_outputs, ignore_errors=True)
        result = run_guide_command(PROJECT, command)
        assert (project_cwd_outputs / "comparison.png").is_file()
        assert (project_cwd_outputs / "metrics.json").is_file()
        assert "VAE reconstruction of target" in result.stdout and "LAQ prediction of target" in result.stdout
        assert "latent statistics" in result.stdout and "vae/kld" in result.stdout


@pytest.mark.slow
def test_line235_compare_into_the_named_output(workspace):
    result = run_guide_command(PROJECT, COMPARE_OUTPUT.command(**workspace))
    out = Path(workspace["out"])
    assert (out / "comparison.png").is_file() and '"vae/mse"' in (out / "metrics.json").read_text()
    assert "mse" in result.stdout and "latent statistics" in result.stdout  # "MSE metrics", "Latent statistics"
