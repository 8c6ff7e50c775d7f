"""Nothing lost: SIGTERM and kill -9 mid-epoch through the real entry point resume to the same final state as an
uninterrupted run (every tensor: model with TEMPURA's memories, optimizer, scheduler, RNG; and the per-step
losses); a truncated newest checkpoint falls back to the previous one; what a resume may change; fresh runs do not
write into another run's folder; the guide's manual checkpoint format resumes and tests."""
import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

from vidsgg import test as test_script
from vidsgg import train
from vidsgg.features.backbone import channels
from vidsgg.models.build import build_model
from vidsgg.option_checks import parse_train_args
from tests.state_compare import assert_same_state

TINY = ["-backbone_depth", "18", "-image_size", "40", "-max_size", "56", "-proj_dim", "16", "-embed_dim", "8",
        "-hidden_dim", "32", "-temporal_layer", "1", "-num_heads", "4", "-union_dim", "16", "-bn_momentum", "0.1"]
# TEMPURA: its memory (buffers rebuilt after each epoch) must survive too. Two epochs; the kill lands in the second.
TEMPURA = ["-model", "tempura", "-num_mixtures", "2", "-epochs", "2", "-batch_size", "1", "-lr", "1e-3",
           "-scheduler", "cosine", "-warmup_steps", "3", "-eval_freq", "2", "-max_eval_videos", "2",
           "-deterministic", "True"]


def flags(data, save, *extra):
    return ["-data_path", str(data), "-save_path", str(save), "-cache_dir", str(Path(data) / "cache"), *TINY, *extra]


def ckpt(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def step_losses(run_dir) -> dict[int, float]:
    """train/loss per optimizer step from the run's TensorBoard files (a step logged twice: the later value)."""
    losses = {}
    for path in sorted(Path(run_dir, "tensorboard").glob("events.out.tfevents.*"), key=os.path.getmtime):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag == "train/loss":
                    losses[event.step] = value.tensor.float_val[0] if value.HasField("tensor") else value.simple_value
    return losses


def start_training(argv) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(train.__file__).parents[1]))
    return subprocess.Popen([sys.executable, train.__file__, *argv], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"training ended before {path.name} appeared:\n{process.stdout.read()[-3000:]}")
        if time.time() > deadline:
            process.kill()
            pytest.fail(f"{path.name} did not appear within {timeout} s")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def uninterrupted(train_data, tmp_path_factory):
    save = tmp_path_factory.mktemp("resume") / "full"
    train.main(flags(train_data, save, *TEMPURA))
    return save


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_interrupted_mid_epoch_then_resumed_equals_the_uninterrupted_run(train_data, uninterrupted, tmp_path, how):
    steps_per_epoch = ckpt(uninterrupted / "checkpoint_final.tar")["step"] // 2
    save = tmp_path / how
    # -save_every_steps 3: checkpoints mid-epoch; the interruption comes once the first one of epoch 2 exists.
    first_in_epoch2 = next(s for s in range(steps_per_epoch + 2, 2 * steps_per_epoch) if s % 3 == 0)
    process = start_training(flags(train_data, save, *TEMPURA, "-save_every_steps", "3"))
    wait_for(save / f"checkpoint_step_{first_in_epoch2}.tar", process)
    process.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGKILL)
    output = process.communicate(timeout=120)[0]
    if how == "sigterm":
        assert process.returncode == 0, output[-3000:]
        assert "Preempted: saved checkpoint_step_" in output
    else:
        assert process.returncode == -signal.SIGKILL
    interrupted_at = ckpt(save / "checkpoint_last.tar")
    assert interrupted_at["epoch"] == 1 and 0 < interrupted_at["batches_done"] < steps_per_epoch  # mid-epoch 2
    assert bool(interrupted_at["model"]["rel_memory.ready"])  # the memory built after epoch 1 is in it

    train.main(flags(train_data, save, *TEMPURA, "-save_every_steps", "3", "-resume_from", "latest"))
    assert f"Resumed from {save / 'checkpoint_step_'}" in (save / "logfile.txt").read_text()
    assert_same_state(ckpt(uninterrupted / "checkpoint_final.tar"), ckpt(save / "checkpoint_final.tar"), "checkpoint",
                      ignore=("config",))
    full_losses, resumed_losses = step_losses(uninterrupted), step_losses(save)
    assert len(full_losses) == 2 * steps_per_epoch and resumed_losses == full_losses


def test_step_checkpoints_are_pruned_to_the_newest_and_a_truncated_one_is_passed_over(train_data, tmp_path):
    save = tmp_path / "run"
    common = ["-scheduler", "plateau", "-warmup_steps", "0", "-lr", "1e-3", "-eval_freq", "9", "-max_eval_videos", "1",
              "-keep_last", "2", "-save_every_steps", "2"]
    train.main(flags(train_data, save, "-epochs", "1", *common))
    final_step = ckpt(save / "checkpoint_final.tar")["step"]
    previous = final_step - 2 if final_step % 2 == 0 else final_step - 1
    steps = sorted(int(p.stem.split("_")[-1]) for p in save.glob("checkpoint_step_*.tar"))
    assert steps == [previous, final_step]
    assert os.path.samefile(save / "checkpoint_last.tar", save / f"checkpoint_step_{final_step}.tar")
    # A truncated newest checkpoint (the node died while the disk flushed): the resume takes the previous one.
    newest = save / f"checkpoint_step_{final_step}.tar"
    newest.write_bytes(newest.read_bytes()[:1000])
    metrics = train.main(flags(train_data, save, "-epochs", "2", *common, "-resume_from", "latest"))
    log = (save / "logfile.txt").read_text()
    assert "truncated or corrupt" in log and "falling back" in log
    assert f"Resumed from {save / f'checkpoint_step_{previous}.tar'}" in log
    assert metrics["step"] == 2 * final_step


def test_pruning_keeps_what_this_run_did_not_write_and_what_it_must_keep(tmp_path):
    from vidsgg.checkpointing import STEP_PATTERN, prune
    files = {n: tmp_path / f"checkpoint_step_{n}.tar" for n in (1, 5, 6, 7, 8)}
    for path in files.values():
        path.write_bytes(b"x")
    prune(tmp_path, 2, STEP_PATTERN, written=[files[n] for n in (5, 6, 7, 8)], keep=(files[5],))
    assert sorted(n for n, p in files.items() if p.exists()) == [1, 5, 7, 8]  # 1: another run's; 5: resumed from


def test_what_a_resume_may_change_and_fresh_runs_in_used_folders(train_data, tmp_path, capsys):
    save = tmp_path / "run"
    common = ["-scheduler", "plateau", "-warmup_steps", "0", "-lr", "1e-3", "-eval_freq", "9", "-max_eval_videos", "1"]
    train.main(flags(train_data, save, "-epochs", "1", *common))
    with pytest.raises(SystemExit, match="already holds checkpoints.*-resume_from latest"):
        train.main(flags(train_data, save, "-epochs", "1", *common))
    changed = [c if c != "1e-3" else "2e-3" for c in common]
    with pytest.raises(SystemExit, match=r"-lr 0.001 -> 0.002.*-allow_config_change True"):
        train.main(flags(train_data, save, "-epochs", "2", *changed, "-resume_from", "latest"))
    with pytest.raises(SystemExit, match=r"-batch_size 1 -> 2"):
        train.main(flags(train_data, save, "-epochs", "2", *common, "-batch_size", "2", "-resume_from", "latest"))
    # A harmless change (how often to evaluate) is reported and accepted; the plateau schedule allows more epochs.
    metrics = train.main(flags(train_data, save, "-epochs", "2", *common, "-eval_freq", "2", "-resume_from", "latest"))
    assert metrics["epoch"] == 2 and "Resuming with -eval_freq 2 (the checkpoint's run had 9)" in \
        (save / "logfile.txt").read_text()
    with pytest.raises(SystemExit):
        train.main(["-data_path", str(train_data), "-resume_from", "latest"])
    assert "-resume_from latest needs -save_path RUN" in capsys.readouterr().err


def test_a_checkpoint_in_the_guides_manual_format_resumes_and_tests(train_data, tmp_path):
    args = parse_train_args(TINY + ["-data_path", str(train_data)])
    union_channels, feature_dim = channels(args.backbone_depth)
    model = build_model(args, feature_dim, union_channels)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    path = tmp_path / "guide" / "checkpoint_epoch_1.tar"
    path.parent.mkdir()
    torch.save({"epoch": 1, "model_state_dict": model.state_dict(), "optimizer_state_dict": optimizer.state_dict(),
                "loss": 0.5, "config": argparse.Namespace(**vars(args))}, path)  # the guide's snippet, verbatim keys
    common = ["-data_path", str(train_data), "-cache_dir", str(Path(train_data) / "cache"), *TINY]
    tested = test_script.main(common + ["-model_path", str(path), "-max_eval_videos", "2"])
    assert 0 <= tested["test/with/R@20"] <= 1 and tested["test/frames_skipped"] == 0
    metrics = train.main(common + ["-resume_from", str(path), "-epochs", "2", "-eval_freq", "2",
                                   "-max_eval_videos", "1"])
    log = (path.parent / "logfile.txt").read_text()  # an exact resume of a file continues in its folder
    assert "the guide's manual format" in log and "Epoch 2/2 - Loss" in log and "Epoch 1/2 - Loss" not in log
    final = ckpt(path.parent / "checkpoint_final.tar")
    assert final["epoch"] == 2 and final["loss"] == pytest.approx(metrics["train/loss"])
    assert not torch.equal(final["model"]["attention_head.weight"], model.state_dict()["attention_head.weight"])
