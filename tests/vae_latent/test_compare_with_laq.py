"""compare_with_laq.py on tiny checkpoints: a VAE trained for a few steps and a LAQ built with laq's own API."""
import json

import cv2
import pytest
import torch

from common import checkpoint
from laq.inference import load_model
from laq.models import build_model as build_laq
from vae_latent import compare_with_laq, engine
from vae_latent.vae_config import load_config

LAQ_TINY = {"image_size": 32, "patch_size": 4, "dim": 32, "heads": 2, "dim_head": 16, "spatial_depth": 1,
            "temporal_depth": 1, "quant_dim": 8, "codebook_size": 4, "code_seq_len": 4}


@pytest.fixture
def checkpoints(frames_data, config_for, tmp_path):
    engine.run(load_config(config_for(frames_data), ["trainer_params.max_steps=2"]))
    vae = tmp_path / "logs_vae/run/checkpoints/vae_final.pt"
    torch.manual_seed(0)
    laq = tmp_path / "laq_last.pt"
    checkpoint.save(laq, {"model": build_laq(LAQ_TINY).state_dict(),
                          "config": {"model": LAQ_TINY, "data": {"offsets": [2]}}})
    load_model(laq)  # the file is one LAQ's loader accepts
    return vae, laq


def test_single_image_pair_writes_png_and_metrics(checkpoints, frames_data, tmp_path, capsys):
    vae, laq = checkpoints
    first, second = (frames_data / "frames/1000" / f"img_0000{i}.jpg" for i in (0, 1))
    out = tmp_path / "cmp"
    assert compare_with_laq.main(["--vae", str(vae), "--laq", str(laq), "--image", str(first),
                                  "--next_image", str(second), "--output", str(out)]) == 0
    png = cv2.imread(str(out / "comparison.png"))
    assert png is not None and png.shape[0] >= 128 and png.shape[1] >= 6 * 128
    result = json.loads((out / "metrics.json").read_text())
    for key in ("vae/mse", "vae/psnr", "vae/ssim", "laq/mse", "laq/psnr", "laq/ssim", "copy_first/mse",
                "vae/mu_mean", "vae/sigma_mean", "vae/kld", "laq/codes_used", "laq/code_perplexity"):
        assert key in result, key
    assert len(result["laq/code_ids"]) == 4 and all(0 <= c < 4 for c in result["laq/code_ids"])
    assert 0 < result["vae/mse"] < 1 and result["laq/codebook_size"] == 4
    printed = capsys.readouterr().out
    assert printed.count("LPIPS skipped") <= 1 and "VAE reconstruction of target" in printed


def test_frames_dir_mode_evaluates_many_pairs(checkpoints, scenes_data, tmp_path, capsys):
    vae, laq = checkpoints
    out = tmp_path / "table"
    assert compare_with_laq.main(["--vae", str(vae), "--laq", str(laq), "--frames_dir", str(scenes_data),
                                  "--output", str(out), "--batch_size", "4"]) == 0
    result = json.loads((out / "metrics.json").read_text())
    # 6 scenes of 4 frames, LAQ's offset 2: starts 0 and 2 of every scene.
    assert result["pairs"] == 12 and "vae/active_units" in result
    assert 1 <= result["laq/codes_used"] <= 4
    assert "offset 2" in capsys.readouterr().out
    assert (out / "comparison.png").is_file()


def test_wrong_checkpoint_kind_is_an_error_naming_it(checkpoints, frames_data, tmp_path):
    vae, laq = checkpoints
    with pytest.raises(checkpoint.CheckpointError, match="laq_last.pt"):
        compare_with_laq.main(["--vae", str(laq), "--laq", str(laq), "--image",
                               str(frames_data / "frames/1000/img_00000.jpg"), "--output", str(tmp_path / "x")])
