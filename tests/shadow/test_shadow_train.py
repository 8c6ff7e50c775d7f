"""shadow/train.py end to end on tiny rendered sets: the litmus test (the loss falls by a large factor and the
one-step model beats the mean-shadow baseline on IoU), exact resume, the non-finite guard, strict flags, and the
evaluation script and forward check on the trained checkpoint."""
import json
import re

import pytest
import torch

import shadow.train as train
from common import checkpoint
from common.checkpoint import ConfigChangeError, RunFolderInUse
from shadow.evaluate import main as evaluate_main
from shadow.scripts.check_model import main as check_model_main
from shadow.synth import write_dataset

TINY = ["--image_size", "32", "--batch_size", "8", "--mixed_precision", "no", "--num_workers", "0"]


def losses_from_log(run):
    return [float(m) for m in re.findall(r"step \d+/\d+ loss=([0-9.e+-]+)", (run / "training.log").read_text())]


@pytest.mark.slow
def test_litmus_loss_falls_and_model_beats_the_mean_shadow(tmp_path):
    # Long, crisp shadows (θ 30-45, size 2-4) in every direction: the mean map is a faint ring, so only a model
    # that uses the light parameters can beat it.
    data = write_dataset(tmp_path / "data", 400, image_size=32, theta_range=(30, 45), size_range=(2, 4))
    run = tmp_path / "run"
    metrics = train.main(["--data_dir", str(data), *TINY, "--max_iterations", "300", "--lr", "2e-3",
                          "--warmup_steps", "20", "--log_every", "10", "--eval_every", "300", "--save_every", "300",
                          "--output_dir", str(run)])
    losses = losses_from_log(run)
    assert losses[0] > 5 * min(losses[-3:])  # first 10 steps vs the end
    assert metrics["val/iou"] > metrics["baseline/iou"]
    assert metrics["val/zncc"] > metrics["baseline/zncc"]
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["val/iou"] == pytest.approx(metrics["val/iou"])
    for name in ("training_config.json", "training.log", "latest_model.pt", "best_model.pt", "checkpoint_300.pt"):
        assert (run / name).is_file()
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))

    out = tmp_path / "eval"
    evaluated = evaluate_main(["--checkpoint", str(run / "best_model.pt"), "--synthetic", "--output", str(out),
                               "--seeds", "2", "--num_objects", "1"])
    for track in ("softness_control", "horizontal_direction_control", "vertical_direction_control"):
        assert {f"{track}/iou", f"{track}/iou_std", f"{track}/zncc", f"baseline/{track}/iou"} <= set(evaluated)
        assert (out / f"{track}.png").is_file()
    assert json.loads((out / "metrics.json").read_text())["all/iou"] == pytest.approx(evaluated["all/iou"])
    assert "| softness_control |" in (out / "results.md").read_text()


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("small") / "data", 40, image_size=32)


def run_args(data, out, steps, **extra):
    args = ["--data_dir", str(data), *TINY, "--max_iterations", str(steps), "--lr", "1e-3", "--warmup_steps", "3",
            "--log_every", "2", "--eval_every", "100", "--save_every", "3", "--output_dir", str(out)]
    for key, value in extra.items():
        args += [f"--{key}", str(value)]
    return args


def test_resume_continues_exactly(tmp_path, small_data):
    train.main(run_args(small_data, tmp_path / "full", 8))
    train.main(run_args(small_data, tmp_path / "split", 5))  # an epoch is 4 steps: resume crosses a boundary
    train.main(run_args(small_data, tmp_path / "split", 8, resume_from="latest"))
    full = checkpoint.load(tmp_path / "full" / "latest_model.pt")
    split = checkpoint.load(tmp_path / "split" / "latest_model.pt")
    assert full["step"] == split["step"] == 8
    for key, value in full["model"].items():
        assert torch.equal(value, split["model"][key]), key
    assert "Resumed from" in (tmp_path / "split" / "training.log").read_text()
    assert sorted(p.name for p in (tmp_path / "full").glob("checkpoint_*.pt")) == [
        "checkpoint_3.pt", "checkpoint_6.pt", "checkpoint_8.pt"]


def test_run_folder_is_never_mixed_and_a_changed_config_is_refused_on_resume(tmp_path, small_data):
    run = tmp_path / "run"
    train.main(run_args(small_data, run, 2))
    with pytest.raises(RunFolderInUse, match=f"Run folder {run} already holds"):
        train.main(run_args(small_data, run, 2))  # a second fresh run into the same folder
    with pytest.raises(ConfigChangeError, match=r"lr: 0\.001 -> 0\.002.*--allow_config_change"):
        train.main(run_args(small_data, run, 4, resume_from="latest", lr=2e-3))
    stale = run / ".checkpoint_3.pt.0badc0de.tmp"  # what a save killed mid-write leaves
    stale.write_bytes(b"partial")
    train.main(run_args(small_data, run, 4, resume_from="latest", lr=2e-3) + ["--allow_config_change"])
    assert not stale.exists() and checkpoint.load(run / "latest_model.pt")["step"] == 4
    log = (run / "training.log").read_text()
    assert "Resuming with config changes (--allow_config_change given): lr: 0.001 -> 0.002" in log
    assert f"Removed {stale}" in log


def test_gradient_accumulation_and_checkpointing_train(tmp_path, small_data):
    metrics = train.main(run_args(small_data, tmp_path / "acc", 2, gradient_accumulation=2) +
                         ["--gradient_checkpointing"])
    assert checkpoint.load(tmp_path / "acc" / "latest_model.pt")["batches_done"] == 4
    assert 0.0 <= metrics["val/iou"] <= 1.0


# The skipped optimizer step is the point of this test; the schedule still advances with the step counter, which
# is what torch's "lr_scheduler.step() before optimizer.step()" warning notices.
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
def test_non_finite_loss_is_reported_and_the_step_skipped(tmp_path, small_data, monkeypatch):
    real_losses = train.flow_losses
    calls = {"n": 0}

    def nan_on_first_call(*args, **kwargs):
        calls["n"] += 1
        per_sample, t = real_losses(*args, **kwargs)
        return (per_sample * float("nan"), t) if calls["n"] == 1 else (per_sample, t)

    monkeypatch.setattr(train, "flow_losses", nan_on_first_call)
    train.main(run_args(small_data, tmp_path / "nan", 2))
    log = (tmp_path / "nan" / "training.log").read_text()
    assert "⚠️  NaN/Inf detected in loss!" in log and "optimizer step skipped" in log
    assert checkpoint.load(tmp_path / "nan" / "latest_model.pt")["guard"]["skipped_total"] == 1


def test_unknown_flag_is_rejected_by_name(capsys):
    with pytest.raises(SystemExit):
        train.parse_args(["--data_dir", "x", "--learning_rate", "1"])
    assert "--learning_rate" in capsys.readouterr().err


def test_check_model_counts_non_zero_gradients(capsys):
    assert check_model_main(["--backbone", "unet", "--image_size", "32", "--mixed_precision", "bf16"]) == 0
    out = capsys.readouterr().out
    # At initialisation only the zero-initialised output conv gets a gradient; after warm-up steps every tensor.
    at_init = re.findall(r"at initialisation: (\d+)/(\d+) parameters have non-zero gradients", out)
    assert at_init == [("2", "114"), ("2", "114")]
    counts = re.findall(r"Parameters with gradients: (\d+)/(\d+)", out)
    assert counts == [("114", "114"), ("114", "114")]
    assert "ALL DTYPE TESTS PASSED! ✅" in out


def test_check_model_fails_when_a_layer_is_cut_off_from_the_loss(capsys, monkeypatch):
    from shadow.models.embedding import LightEmbedding
    real_forward = LightEmbedding.forward
    monkeypatch.setattr(LightEmbedding, "forward", lambda self, *a: real_forward(self, *a).detach())
    assert check_model_main(["--backbone", "unet", "--image_size", "32", "--mixed_precision", "no"]) == 1
    out = capsys.readouterr().out
    assert "Parameters with gradients: 110/114" in out and "parameters get no non-zero gradient" in out
    assert "light.mlp" in out


def test_switches_work_bare_and_with_a_value(tmp_path):
    bare = train.parse_args(["--data_dir", str(tmp_path), "--mixed_precision", "--gradient_checkpointing"])
    assert bare.mixed_precision == "bf16" and bare.gradient_checkpointing is True
    valued = train.parse_args(["--data_dir", str(tmp_path), "--mixed_precision", "no",
                               "--gradient_checkpointing", "false"])
    assert valued.mixed_precision == "no" and valued.gradient_checkpointing is False
    assert train.parse_args(["--data_dir", str(tmp_path)]).gradient_checkpointing is False


def test_default_lr_depends_on_the_backbone(tmp_path):
    assert train.parse_args(["--data_dir", str(tmp_path)]).lr == 1e-3  # the from-scratch pixel UNet
    sdxl = train.parse_args(["--data_dir", str(tmp_path), "--backbone", "sdxl", "--pretrained_path", "x",
                             "--image_size", "1024"])
    assert sdxl.lr == 1e-5  # the paper's fine-tuning rate
    assert train.parse_args(["--data_dir", str(tmp_path), "--lr", "3e-4"]).lr == 3e-4


@pytest.mark.parametrize("flags,message", [
    (["--save_every", "0"], "--save_every must be >= 1"),
    (["--warmup_steps", "-5"], "--warmup_steps must be >= 0"),
    (["--num_workers", "-1"], "--num_workers must be >= 0"),
    (["--lr", "0"], "--lr must be > 0"),
    (["--grad_clip", "-1"], "--grad_clip and --penumbra_weight must be >= 0"),
    (["--image_size", "100"], "--image_size 100: the unet backbone has configs for"),
    (["--backbone", "sdxl"], "--backbone sdxl needs --pretrained_path DIR"),
    (["--gradient_checkpointing", "maybe"], "expected true or false, got 'maybe'"),
])
def test_bad_flags_are_refused_at_start_up_by_name(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit):
        train.parse_args(["--data_dir", str(tmp_path), *flags])
    assert message in capsys.readouterr().err


def test_missing_data_dir_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train.parse_args(["--data_dir", str(tmp_path / "nowhere")])
    assert "nowhere does not exist" in capsys.readouterr().err


def test_seed_grad_clip_and_kept_checkpoints_are_flags(tmp_path, small_data):
    run = tmp_path / "run"
    train.main(run_args(small_data, run, 4, save_every=1, keep_checkpoints=2, seed=7, grad_clip=0))
    assert sorted(p.name for p in run.glob("checkpoint_*.pt")) == ["checkpoint_3.pt", "checkpoint_4.pt"]
    config = checkpoint.load(run / "latest_model.pt")["config"]
    assert config["seed"] == 7 and config["grad_clip"] == 0 and config["keep_checkpoints"] == 2
    log = (run / "training.log").read_text()
    assert re.search(r"step 4/4 loss=[0-9.e+-]+ loss_t1=[0-9.e+-]+ lr=", log)
    other = tmp_path / "other"  # another seed, every checkpoint kept
    train.main(run_args(small_data, other, 4, save_every=1, keep_checkpoints=0, seed=8))
    assert sorted(p.name for p in other.glob("checkpoint_*.pt")) == [f"checkpoint_{i}.pt" for i in range(1, 5)]
    a, b = checkpoint.load(run / "checkpoint_4.pt")["model"], checkpoint.load(other / "checkpoint_4.pt")["model"]
    assert not torch.equal(a["conv_in.weight"], b["conv_in.weight"])
