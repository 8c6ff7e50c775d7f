"""compare_with_laq.py on tiny checkpoints: a VAE trained for a few steps and a LAQ built with laq's own API."""
import json

import cv2
import numpy as np
import pytest
import torch

from common import checkpoint
from laq.inference import load_model
from laq.models import build_model as build_laq
from vae_latent import compare_with_laq, training
from vae_latent.comparison_figure import ERROR_MAX, colour_bar
from vae_latent.dataset_sthv2 import discover_videos, split_videos
from vae_latent.vae_config import load_config

LAQ_TINY = {"image_size": 32, "patch_size": 4, "dim": 32, "heads": 2, "dim_head": 16, "spatial_depth": 1,
            "temporal_depth": 1, "quant_dim": 8, "codebook_size": 4, "code_seq_len": 4}


@pytest.fixture
def checkpoints(frames_data, config_for, tmp_path):
    training.run(load_config(config_for(frames_data), ["trainer_params.max_steps=2"]))
    vae = tmp_path / "logs_vae/run/checkpoints/vae_final.pt"
    torch.manual_seed(0)
    laq = tmp_path / "laq/runs/laq/tiny/2026-01-01_00-00-00/checkpoints/last.pt"  # where LAQ's training writes
    checkpoint.save(laq, {"model": build_laq(LAQ_TINY).state_dict(),
                          "config": {"model": LAQ_TINY, "data": {"offsets": [2]}}})
    load_model(laq)  # the file is one LAQ's loader accepts
    return vae, laq


def compare(vae, laq, *args):
    return compare_with_laq.main(["--vae", str(vae), "--laq", str(laq), *map(str, args)])


def test_single_image_pair_writes_png_and_metrics(checkpoints, frames_data, tmp_path, capsys):
    vae, laq = checkpoints
    first, second = (frames_data / "frames/1000" / f"img_0000{i}.jpg" for i in (0, 1))
    out = tmp_path / "cmp"
    assert compare(vae, laq, "--image", first, "--next_image", second, "--output", out) == 0
    result = json.loads((out / "metrics.json").read_text())
    for key in ("vae/mse", "vae/psnr", "vae/ssim", "laq/mse", "laq/psnr", "laq/ssim", "copy_previous/mse",
                "pca/mse", "mean_image/psnr", "vae/mu_mean", "vae/sigma_mean", "vae/kld", "laq/codes_used",
                "laq/code_perplexity"):
        assert key in result, key
    assert len(result["laq/code_ids"]) == 4 and all(0 <= c < 4 for c in result["laq/code_ids"])
    assert 0 < result["vae/mse"] < 1 and result["laq/codebook_size"] == 4
    assert result["pca/components"] == 4  # the VAE's latent size, fitted on the VAE's own training videos
    printed = capsys.readouterr().out
    assert printed.count("LPIPS skipped") <= 1 and "VAE reconstruction of target" in printed
    assert "PCA-4 of target (baseline)" in printed and "copy previous frame" in printed
    png = cv2.imread(str(out / "comparison.png"))
    # previous | target | VAE, error | PCA, error | LAQ, error: 8 cells of 96 px
    assert png is not None and png.shape[0] >= 96 and png.shape[1] >= 8 * 96


def test_without_a_next_frame_there_is_no_copy_row_and_no_previous_column(checkpoints, frames_data, tmp_path,
                                                                          capsys):
    vae, laq = checkpoints
    with_next, alone = tmp_path / "with_next", tmp_path / "alone"
    image, second = frames_data / "frames/1000/img_00000.jpg", frames_data / "frames/1000/img_00001.jpg"
    compare(vae, laq, "--image", image, "--next_image", second, "--output", with_next)
    capsys.readouterr()
    compare(vae, laq, "--image", image, "--output", alone)
    assert "copy previous frame" not in capsys.readouterr().out
    assert "copy_previous/mse" not in json.loads((alone / "metrics.json").read_text())
    width = {name: cv2.imread(str(folder / "comparison.png")).shape[1] for name, folder in
             [("with_next", with_next), ("alone", alone)]}
    assert width["with_next"] - width["alone"] == 96 + 4  # exactly one column (cell + padding) fewer


def test_frames_dir_defaults_to_the_validation_split(checkpoints, scenes_data, tmp_path, capsys):
    vae, laq = checkpoints
    videos, _ = discover_videos(scenes_data)
    _, val, _ = split_videos(videos, scenes_data, val_fraction=0.2)  # the VAE's val_fraction
    out = tmp_path / "val"
    assert compare(vae, laq, "--frames_dir", scenes_data, "--output", out, "--batch_size", "4") == 0
    result = json.loads((out / "metrics.json").read_text())
    # 4 frames per scene and LAQ's offset 2: one pair (0, 2) per scene ((2, 4) would need a fifth frame)
    assert result["pairs"] == len(val) and 0 < len(val) < len(videos)
    assert 1 <= result["laq/codes_used"] <= 4
    printed = capsys.readouterr().out
    assert f"{len(val)} val videos of 6" in printed and "offset 2" in printed
    assert compare(vae, laq, "--frames_dir", scenes_data, "--output", out, "--split", "all") == 0
    result = json.loads((out / "metrics.json").read_text())
    assert result["pairs"] == 6 and "vae/active_units" in result


def test_videos_shorter_than_offset_plus_one_are_skipped(checkpoints, frames_factory, tmp_path, capsys):
    vae, laq = checkpoints
    data = frames_factory("short", n_videos=6, n_frames=2)  # offset 2 needs 3 frames: no pair anywhere
    (data / "frames/1000/img_00002.jpg").write_bytes((data / "frames/1000/img_00001.jpg").read_bytes())
    out = tmp_path / "short_out"
    assert compare(vae, laq, "--frames_dir", data, "--split", "all", "--output", out) == 0
    assert json.loads((out / "metrics.json").read_text())["pairs"] == 1  # only video 1000 has 3 frames
    assert "Skipped 5 video(s) with fewer than offset + 1 = 3 frames" in capsys.readouterr().out


def test_parameters_and_flops_of_both_models_are_reported(checkpoints, frames_data, tmp_path, capsys):
    vae, laq = checkpoints
    out = tmp_path / "cost"
    compare(vae, laq, "--image", frames_data / "frames/1000/img_00000.jpg", "--output", out)
    result = json.loads((out / "metrics.json").read_text())
    vae_params = sum(v.numel() for k, v in checkpoint.load(vae)["model"].items() if "running" not in k
                     and "num_batches" not in k)
    assert result["vae/params"] == vae_params
    assert result["laq/params"] == sum(p.numel() for p in build_laq(LAQ_TINY).parameters())
    assert result["vae/gflops_per_frame"] > 0 and result["laq/gflops_per_frame"] > 0
    printed = capsys.readouterr().out
    assert f"VAE  {vae_params:>13,} parameters" in printed and "GFLOPs per frame" in printed


def test_the_guides_laq_path_is_an_error_that_says_where_laq_writes(checkpoints, frames_data, tmp_path, capsys):
    vae, _ = checkpoints
    with pytest.raises(SystemExit) as stop:
        compare(vae, "../laq/results/model.pt", "--image", frames_data / "frames/1000/img_00000.jpg")
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "LAQ checkpoint not found: ../laq/results/model.pt" in err
    assert "<run folder>/checkpoints/last.pt" in err and "runs/laq/<experiment_name>" in err


def test_a_laq_run_folder_is_accepted(checkpoints, frames_data, tmp_path):
    vae, laq = checkpoints
    run_folder = laq.parent.parent
    assert compare(vae, run_folder, "--image", frames_data / "frames/1000/img_00000.jpg",
                   "--output", tmp_path / "r") == 0


def test_wrong_checkpoint_kind_is_an_error_naming_it(checkpoints, frames_data, tmp_path):
    vae, laq = checkpoints
    with pytest.raises(checkpoint.CheckpointError, match="last.pt"):
        compare(laq, laq, "--image", frames_data / "frames/1000/img_00000.jpg", "--output", tmp_path / "x")


def test_colour_bar_runs_from_the_largest_error_at_the_top_to_zero():
    from common.viz import colorize

    bar = colour_bar(50)
    assert np.array_equal(bar[0, 0], colorize(np.full((2, 2), ERROR_MAX), 0.0, ERROR_MAX, "turbo")[0, 0])
    assert np.array_equal(bar[-1, 0], colorize(np.zeros((2, 2)), 0.0, ERROR_MAX, "turbo")[0, 0])
