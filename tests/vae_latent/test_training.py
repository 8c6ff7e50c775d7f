"""Training-loop behaviour on a 16x16 VAE: schedule, learning, logging, checkpoints, exact resume."""
import pytest
import torch

from common import checkpoint
from common.run_checks import ConfigChangeError, RunFolderInUse
from common.seed import set_deterministic
from vae_latent import training
from vae_latent.vae_config import load_config


@pytest.fixture
def deterministic():
    set_deterministic(True)
    yield
    set_deterministic(False)


def train(config_path, *overrides, resume=None, allow_config_change=False):
    return training.run(load_config(config_path, list(overrides)), resume=resume,
                        allow_config_change=allow_config_change)


def test_exponential_lr_steps_once_per_epoch_not_per_step(frames_data, config_for, tmp_path):
    # 20 training frames, batch 4: 5 optimizer steps per epoch, 3 epochs (loaded by one worker process).
    path = config_for(frames_data, data_params={"frames_per_video": "all", "num_workers": 1},
                      exp_params={"LR": 0.01, "scheduler_gamma": 0.5}, trainer_params={"max_epochs": 3})
    metrics = train(path)
    state = checkpoint.load(tmp_path / "logs_vae/run/checkpoints/step_00000015.pt")
    assert metrics["step"] == 15 and state["epoch"] == 3
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.01 * 0.5 ** 3)
    assert state["scheduler"]["last_epoch"] == 3


def test_short_training_lowers_reconstruction_loss(frames_factory, config_for):
    data = frames_factory("sixteen", n_videos=16)  # 13 training videos (52 frames), 3 validation videos
    path = config_for(data, data_params={"frames_per_video": "all", "val_fraction": 0.25},
                      trainer_params={"max_epochs": 12, "log_every_n_steps": 50})
    before = train(path, "trainer_params.max_steps=1", "logging_params.name=short")
    after = train(path, "logging_params.name=long")
    assert after["step"] == 156 and after["val/images"] == 12  # every frame of the 3 validation videos
    assert after["val/recon_loss"] < 0.6 * before["val/recon_loss"]
    assert after["val/mse"] < before["val/mse"] and after["val/psnr"] > before["val/psnr"] + 2
    assert after["val/mse"] < after["val/mean_image_mse"]  # beats predicting the mean training image


def test_outputs_metrics_checkpoints_and_tensorboard(frames_data, config_for, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    path = config_for(frames_data, data_params={"frames_per_video": "all"},
                      logging_params={"save_every_n_steps": 2, "keep_last_checkpoints": 2})
    metrics = train(path)
    run = tmp_path / "logs_vae/run"
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert ckpts == ["step_00000008.pt", "step_00000010.pt", "vae_best.pt", "vae_final.pt"]
    final = checkpoint.load(run / "checkpoints/vae_final.pt")
    assert final["config"]["model_params"]["hidden_dims"] == [8, 16] and final["step"] == 10
    assert final["metrics"]["val/mse"] == pytest.approx(metrics["val/mse"])
    written = (run / "metrics.json").read_text()
    for key in ("val/mse", "val/psnr", "val/ssim", "val/kld", "val/active_units", "val/baseline_psnr"):
        assert f'"{key}"' in written
    assert (run / "config.yaml").is_file()
    events = EventAccumulator(str(run), size_guidance={"images": 0, "histograms": 0}).Reload()
    tags = events.Tags()
    for tag in ("train/loss", "train/recon_loss", "train/kld", "train/lr", "train/grad_norm", "train/active_units",
                "val/loss", "val/ssim", "val/active_units"):
        assert tag in tags["scalars"], tag
    assert {"train/kld_per_dim", "val/kld_per_dim"} <= set(tags["histograms"])
    assert {"train/reconstructions", "train/prior_samples"} <= set(tags["images"])
    assert all(e.value > 0 for e in events.Scalars("train/kld"))  # KLD is logged as a positive number


def test_resume_continues_exactly(frames_data, config_for, tmp_path, deterministic):
    # 20 training frames, batch 4: 5 steps per epoch, so the interruption at step 7 falls mid-epoch.
    overrides = {"data_params": {"frames_per_video": "all"}, "logging_params": {"save_every_n_steps": 3},
                 "trainer_params": {"max_epochs": 4}}
    whole = config_for(frames_data, name="whole", **overrides)
    train(whole, "trainer_params.max_steps=12")
    split = config_for(frames_data, name="split", **overrides)
    train(split, "trainer_params.max_steps=7")
    train(split, "trainer_params.max_steps=12", resume="auto")
    a = checkpoint.load(tmp_path / "logs_vae/whole/checkpoints/vae_final.pt")["model"]
    b = checkpoint.load(tmp_path / "logs_vae/split/checkpoints/vae_final.pt")["model"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    fresh = config_for(frames_data, name="fresh", **overrides)
    train(fresh, "trainer_params.max_steps=12", "exp_params.manual_seed=4")
    c = checkpoint.load(tmp_path / "logs_vae/fresh/checkpoints/vae_final.pt")["model"]
    assert not torch.equal(a["fc_mu.weight"], c["fc_mu.weight"])  # the comparison can fail


def test_resume_from_an_explicit_path_and_missing_path(frames_data, config_for, tmp_path):
    path = config_for(frames_data, data_params={"frames_per_video": "all"})
    train(path, "trainer_params.max_steps=3")
    ckpt = tmp_path / "logs_vae/run/checkpoints/step_00000003.pt"
    metrics = train(path, "trainer_params.max_steps=4", resume=str(ckpt))
    assert metrics["step"] == 4
    with pytest.raises(checkpoint.CheckpointError, match="nope.pt"):
        train(path, resume=str(tmp_path / "nope.pt"))


def test_single_process_entry_refuses_a_process_group(monkeypatch, frames_data, config_for):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="train_ddp.py"):
        training.main(["--config", str(config_for(frames_data))], allow_distributed=False)


def test_unknown_cli_override_is_an_error(frames_data, config_for):
    from common.config import ConfigError

    with pytest.raises(ConfigError, match="exp_params.learning_rate"):
        training.main(["--config", str(config_for(frames_data)), "--set", "exp_params.learning_rate=1"])


def params_with_grads():
    weights = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))]
    weights[0].grad = torch.tensor([3.0, -0.5, 0.2])
    weights[1].grad = torch.tensor([-4.0, 1.0])
    return weights


FULL_NORM = (9 + 0.25 + 0.04 + 16 + 1) ** 0.5


def total_norm(params):
    return torch.cat([p.grad for p in params]).norm().item()


def test_gradient_clip_val_clips_the_norm_as_lightning_does():
    params = params_with_grads()
    norm = training.clip_gradients(params, clip_val=0.5, algorithm="norm", max_norm=None)
    assert norm.item() == pytest.approx(FULL_NORM) and total_norm(params) == pytest.approx(0.5)
    ratio = params[0].grad / torch.tensor([3.0, -0.5, 0.2])  # the direction is kept: one scale for all elements
    assert torch.allclose(ratio, torch.full((3,), 0.5 / FULL_NORM))


def test_the_smaller_of_gradient_clip_val_and_max_grad_norm_wins():
    params = params_with_grads()
    training.clip_gradients(params, clip_val=2.0, algorithm="norm", max_norm=0.5)
    assert total_norm(params) == pytest.approx(0.5)
    params = params_with_grads()
    training.clip_gradients(params, clip_val=0.25, algorithm="norm", max_norm=1.0)
    assert total_norm(params) == pytest.approx(0.25)


def test_value_algorithm_clips_each_element_then_max_grad_norm_the_total():
    params = params_with_grads()
    norm = training.clip_gradients(params, clip_val=1.0, algorithm="value", max_norm=None)
    assert torch.equal(params[0].grad, torch.tensor([1.0, -0.5, 0.2]))
    assert torch.equal(params[1].grad, torch.tensor([-1.0, 1.0]))
    assert norm.item() == pytest.approx((1 + 0.25 + 0.04 + 1 + 1) ** 0.5)
    params = params_with_grads()
    training.clip_gradients(params, clip_val=1.0, algorithm="value", max_norm=0.5)
    assert total_norm(params) == pytest.approx(0.5)


def test_no_limits_leave_gradients_alone():
    params = params_with_grads()
    norm = training.clip_gradients(params, clip_val=None, algorithm="norm", max_norm=None)
    assert torch.equal(params[1].grad, torch.tensor([-4.0, 1.0])) and norm.item() == pytest.approx(FULL_NORM)


def test_validation_period_and_profiler_flag(frames_data, config_for, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    path = config_for(frames_data, data_params={"frames_per_video": "all"},
                      trainer_params={"max_epochs": 3, "check_val_every_n_epoch": 2, "profile": True})
    train(path)  # 15 steps: validation after epoch 2 and at the end (epoch 3); profiler records steps 5-10
    run = tmp_path / "logs_vae/run"
    val_steps = [e.step for e in EventAccumulator(str(run)).Reload().Scalars("val/loss")]
    assert val_steps == [10, 15]
    assert any((run / "profile").iterdir())


def test_a_fresh_run_in_a_folder_with_checkpoints_is_refused(frames_data, config_for, tmp_path):
    path = config_for(frames_data, data_params={"frames_per_video": "all"})
    train(path, "trainer_params.max_steps=6")
    ckpt_dir = tmp_path / "logs_vae/run/checkpoints"
    before = {p.name: p.stat().st_mtime_ns for p in ckpt_dir.iterdir()}
    with pytest.raises(RunFolderInUse, match="already holds .*checkpoint.*of an earlier run.*--resume auto"):
        train(path, "trainer_params.max_steps=3")
    assert {p.name: p.stat().st_mtime_ns for p in ckpt_dir.iterdir()} == before  # nothing pruned or rewritten
    assert train(path, "trainer_params.max_steps=8", resume="auto")["step"] == 8


def test_resume_auto_with_only_unreadable_checkpoints_is_an_error(frames_data, config_for, tmp_path):
    path = config_for(frames_data)
    ckpt_dir = tmp_path / "logs_vae/run/checkpoints"
    truncated = checkpoint.save(ckpt_dir / "step_00000004.pt", {"model": {"w": torch.zeros(1000)}})
    truncated.write_bytes(truncated.read_bytes()[:500])
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint in .* could be read"):
        train(path, resume="auto")


def test_a_null_run_name_makes_a_new_folder_and_cannot_resume_latest(frames_data, config_for, tmp_path):
    from common.config import ConfigError

    path = config_for(frames_data, logging_params={"name": None})
    train(path, "trainer_params.max_steps=1")
    made = list((tmp_path / "logs_vae").glob("VanillaVAE_*/checkpoints/vae_final.pt"))
    assert len(made) == 1
    with pytest.raises(ConfigError, match="--resume latest needs a run folder"):
        train(path, resume="latest")


def test_an_empty_validation_set_is_a_start_up_error(frames_data, config_for, tmp_path):
    path = config_for(frames_data, data_params={"val_fraction": 0.0})
    with pytest.raises(ValueError, match="validation set is empty"):
        train(path)
    assert not (tmp_path / "logs_vae/run/checkpoints").exists()


def test_progress_bar_on_rank_zero(frames_data, config_for, monkeypatch, capsys):
    monkeypatch.setenv("PROGRESS", "1")
    train(config_for(frames_data))  # 5 training videos, one frame each, batch 4: 1 step per epoch, 2 epochs
    err = capsys.readouterr().err
    assert "train: 100%" in err and "2/2" in err and "loss=" in err


def test_resuming_with_a_changed_learning_rate_is_refused_unless_allowed(frames_data, config_for, tmp_path):
    path = config_for(frames_data, data_params={"frames_per_video": "all"})
    train(path, "trainer_params.max_steps=4")
    with pytest.raises(ConfigChangeError, match=r"exp_params.LR: 0.005 -> 0.003.*--allow_config_change"):
        train(path, "trainer_params.max_steps=6", "exp_params.LR=0.003", resume="auto")
    assert train(path, "trainer_params.max_steps=6", "exp_params.LR=0.003", resume="auto",
                 allow_config_change=True)["step"] == 6
    # a longer run and another logging period are not refused
    assert train(path, "trainer_params.max_steps=7", "exp_params.LR=0.003", "trainer_params.log_every_n_steps=3",
                 resume="auto")["step"] == 7


def test_stale_temporary_files_of_an_interrupted_save_are_removed(frames_data, config_for, tmp_path):
    path = config_for(frames_data, data_params={"frames_per_video": "all"})
    train(path, "trainer_params.max_steps=2")
    stale = tmp_path / "logs_vae/run/checkpoints/.step_00000004.pt.abcd1234.tmp"
    stale.write_bytes(b"half a checkpoint")
    train(path, "trainer_params.max_steps=3", resume="auto")
    assert not stale.exists()
