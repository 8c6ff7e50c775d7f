"""Training script: flags reach the model / optimizer / loop, outputs, learning beats random weights, resume,
progressive training, and a 2-process DDP run."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from common.data import BadSampleError
from common.seed import seed_everything
from vidsgg.data.action_genome import ActionGenome
from vidsgg.synth import write_dataset
from vidsgg import test as test_script
from vidsgg import train
from vidsgg.models.build import build_model, word_table
from vidsgg.options import train_parser
from vidsgg.option_checks import parse_train_args

TINY = ["-backbone_depth", "18", "-image_size", "40", "-max_size", "56", "-proj_dim", "16", "-embed_dim", "8",
        "-hidden_dim", "32", "-temporal_layer", "1", "-num_heads", "4", "-union_dim", "16",
        "-bn_momentum", "0.1"]


@pytest.fixture
def data(train_data):
    return train_data


def run(data, save, *flags, cache=None):
    argv = ["-data_path", str(data), "-save_path", str(save), "-cache_dir", str(cache or Path(data) / "cache"),
            *TINY, *flags]
    return train.main(argv)


def ckpt(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_unknown_and_bad_flags_are_errors(capsys):
    with pytest.raises(SystemExit):
        train_parser().parse_args(["-mode", "predcls", "-learning_rate", "1"])
    assert "-learning_rate" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_parser().parse_args(["-epoch", "3"])  # no abbreviations of -epochs
    with pytest.raises(SystemExit):
        train.main(["-mode", "sgdet", "-data_path", "x"])
    assert "-detections" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train.main(["-distributed", "True", "-data_path", "x"])
    assert "torchrun" in capsys.readouterr().err


def test_model_flags_reach_the_model(tmp_path):
    glove = tmp_path / "glove.txt"
    glove.write_text("chair " + " ".join(["0.5"] * 8) + "\nperson " + " ".join(["-1"] * 8) + "\n")
    args = parse_train_args(TINY + ["-spatial_layer", "2", "-temporal_layer", "3", "-hidden_dim", "24",
                                             "-word_vectors", f"glove:{glove}", "-mode", "sgcls"])
    model = build_model(args, 512, 256, word_table(args))
    assert len(model.transformer.spatial) == 2 and len(model.transformer.temporal) == 3
    assert model.transformer.spatial[0].ffn[0].out_features == 24
    assert model.pair_features.dim == 3 * 16 + 2 * 8 and model.object_classifier is not None
    assert torch.all(model.pair_features.object_word.weight[8] == 0.5)   # chair = class 8
    assert torch.all(model.pair_features.subject_word.weight[1] == -1.0)  # person
    predcls = build_model(parse_train_args(TINY), 512, 256)
    assert predcls.object_classifier is None
    assert predcls.pair_features.subject_fc.in_features == 512 and predcls.pair_features.union_conv.in_channels == 256


def test_loop_flags_outputs_and_early_stopping(data, tmp_path):
    save = tmp_path / "run"
    metrics = run(data, save, "-epochs", "5", "-batch_size", "2", "-accumulate_grad_batches", "2",
                  "-save_freq", "2", "-eval_freq", "2", "-early_stopping_patience", "1",
                  "-early_stopping_min_delta", "1.0", "-scheduler", "cosine", "-warmup_steps", "2",
                  "-weight_decay", "0.3", "-lr", "2e-3", "-max_eval_videos", "2")
    n_train = len(ActionGenome(data, "train"))
    steps_per_epoch = -(-n_train // 4)
    # Evaluations at epochs 2 and 4; the second cannot beat the first by 1.0, so training stops after epoch 4.
    assert metrics["epoch"] == 4 and metrics["stopped_early"] == 1.0 and metrics["step"] == 4 * steps_per_epoch
    files = {p.name for p in save.iterdir()}
    assert {"checkpoint_epoch_2.tar", "checkpoint_epoch_4.tar", "checkpoint_best.tar", "checkpoint_final.tar",
            "metrics.json", "logfile.txt", "config.json", "tensorboard"} <= files
    assert "checkpoint_epoch_1.tar" not in files and "checkpoint_epoch_3.tar" not in files
    log = (save / "logfile.txt").read_text()
    assert "Epoch 1/5 - Loss: " in log and " - LR: " in log and " - Time: " in log
    assert "Epoch 2/5 - Eval - Recall@10: " in log and "Epoch 1/5 - Eval" not in log and "Early stopping" in log
    state = ckpt(save / "checkpoint_final.tar")
    group = state["optimizer"]["param_groups"][0]
    assert group["weight_decay"] == 0.3 and group["initial_lr"] == 2e-3
    total = 5 * steps_per_epoch  # cosine over the planned 5 epochs, after a 2-step warmup
    import math
    expected = 2e-3 * 0.5 * (1 + math.cos(math.pi * (4 * steps_per_epoch - 2) / (total - 2)))
    assert group["lr"] == pytest.approx(expected, rel=1e-6)
    assert ckpt(save / "checkpoint_best.tar")["epoch"] == 2
    saved = json.loads((save / "metrics.json").read_text())
    assert {"val/with/R@20", "val/semi/R@20", "val/no/R@50", "val/with/mR@20", "train/loss"} <= set(saved)


def test_clip_grad_and_bce_loss_change_the_step(data, tmp_path):
    common = ["-epochs", "1", "-batch_size", "16", "-lr", "1e-2", "-scheduler", "step", "-eval_freq", "5",
              "-deterministic", "True"]
    run(data, tmp_path / "a", *common, "-clip_grad", "0")
    run(data, tmp_path / "b", *common, "-clip_grad", "1e-9")
    run(data, tmp_path / "c", *common, "-clip_grad", "0", "-bce_loss", "True")
    run(data, tmp_path / "amp", *common, "-clip_grad", "0", "-use_amp", "True")
    run(data, tmp_path / "seed", *common, "-clip_grad", "0", "-seed", "5")
    seed_everything(0)  # train.py seeds, then builds the model: the same initial weights
    start = build_model(parse_train_args(TINY), 512, 256).state_dict()
    key = "attention_head.weight"
    moved = {name: (ckpt(tmp_path / name / "checkpoint_final.tar")["model"][key] - start[key]).abs().max()
             for name in "abc"}
    # With the gradient clipped to 1e-9, Adam's epsilon dominates: the step is far smaller.
    assert moved["b"] < 0.2 * moved["a"]
    a_weights = ckpt(tmp_path / "a" / "checkpoint_final.tar")["model"]
    c_weights = ckpt(tmp_path / "c" / "checkpoint_final.tar")["model"]
    assert torch.equal(a_weights[key], c_weights[key])  # attention CE is the same under both losses
    assert not torch.equal(a_weights["spatial_head.weight"], c_weights["spatial_head.weight"])
    # bf16 autocast changes the numbers of the same step; another seed another initialisation.
    amp_weights = ckpt(tmp_path / "amp" / "checkpoint_final.tar")["model"]
    assert not torch.equal(a_weights[key], amp_weights[key]) and torch.isfinite(amp_weights[key]).all()
    assert torch.allclose(a_weights[key], amp_weights[key], atol=0.05)
    assert not torch.equal(a_weights[key], ckpt(tmp_path / "seed" / "checkpoint_final.tar")["model"][key])


def test_training_beats_random_weights_and_test_script(data, tmp_path):
    save = tmp_path / "run"
    flags = ["-epochs", "10", "-lr", "3e-3", "-eval_freq", "10", "-scheduler", "cosine", "-seed", "1"]
    metrics = run(data, save, *flags)
    common = ["-data_path", str(data), "-cache_dir", str(Path(data) / "cache"), *TINY]
    trained = test_script.main(common + ["-model_path", str(save / "checkpoint_final.tar")])
    random = test_script.main(common + ["-random_init", "True", "-seed", "1", "-output", str(tmp_path / "rand")])
    assert trained["test/with/R@20"] == pytest.approx(metrics["val/with/R@20"])
    assert trained["test/with/R@20"] > random["test/with/R@20"] + 0.2, (trained, random)
    assert (tmp_path / "rand" / "metrics.json").is_file()
    with pytest.raises(SystemExit):
        test_script.main(common[:-2] + ["-image_size", "32", "-model_path", str(save / "checkpoint_final.tar")])


def test_resume_is_exact_and_progressive_loads_weights(data, tmp_path):
    common = ["-batch_size", "2", "-lr", "1e-3", "-eval_freq", "9", "-deterministic", "True", "-scheduler", "plateau",
              "-warmup_steps", "3"]
    run(data, tmp_path / "full", "-epochs", "2", *common)
    run(data, tmp_path / "part", "-epochs", "1", *common)
    # Same run folder and flags, more epochs: continue from checkpoint_last.tar.
    run(data, tmp_path / "part", "-epochs", "2", "-resume_from", "latest", *common)
    full = ckpt(tmp_path / "full" / "checkpoint_final.tar")
    resumed = ckpt(tmp_path / "part" / "checkpoint_final.tar")
    assert full["step"] == resumed["step"]
    for key, value in full["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    assert "Resumed from" in (tmp_path / "part" / "logfile.txt").read_text()
    # Progressive: an SGCLS run initialised from the PredCLS checkpoint shares every PredCLS tensor.
    run(data, tmp_path / "sg", "-mode", "sgcls", "-epochs", "1", "-lr", "1e-9", "-eval_freq", "9", "-resume_from",
        str(tmp_path / "full" / "checkpoint_final.tar"))
    sg = ckpt(tmp_path / "sg" / "checkpoint_final.tar")["model"]
    assert torch.allclose(sg["attention_head.weight"], full["model"]["attention_head.weight"], atol=1e-6)
    assert any(k.startswith("object_classifier.") for k in sg)
    assert "Progressive training" in (tmp_path / "sg" / "logfile.txt").read_text()


@pytest.mark.slow
def test_ddp_two_processes(data, tmp_path):
    """TEMPURA in SGCLS with every memory: its memory projections start unused (no prototypes yet), train from
    epoch 2 on (DDP re-wrapped), and the prototypes are summed over the ranks."""
    save = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(Path(train.__file__)), "-distributed", "True", "-device", "cpu", "-data_path", str(data),
           "-save_path", str(save), "-cache_dir", str(tmp_path / "cache"), *TINY, "-epochs", "2",
           "-eval_freq", "2", "-save_freq", "1", "-max_eval_videos", "2", "-mode", "sgcls", "-model", "tempura", "-obj_mem_compute",
           "-rel_mem_compute", "seperate", "-tracking", "True", "-lr", "1e-3"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    state = ckpt(save / "checkpoint_final.tar")
    n_train = len(ActionGenome(data, "train", "sgcls"))
    assert state["step"] == 2 * -(-n_train // 2)  # each rank takes half the videos per epoch
    assert len(state["rng"]) == 2
    assert json.loads((save / "metrics.json").read_text())["val/with/frames"] > 0
    first = ckpt(save / "checkpoint_epoch_1.tar")["model"]
    weights = state["model"]
    assert bool(weights["obj_memory.ready"]) and bool(weights["rel_memory.ready"])
    key = "rel_memory.attention.spatial.in_proj_weight"
    assert not torch.equal(weights[key], first[key])


def test_sgdet_with_a_detections_file(data, tmp_path):
    """Detections = GT boxes slightly shifted plus one false positive per frame; SGDET trains, matches them to
    GT and is evaluated on the detected boxes."""
    detections = {}
    for split in ("train", "test"):
        dataset = ActionGenome(data, split, "sgdet")
        for index in range(len(dataset)):
            sample = dataset[index]
            for key, frame in zip(sample["frame_keys"], sample["gt_annotation"]):
                boxes = [frame[0]["person_bbox"][0]] + [o["bbox"] for o in frame[1:]] + [[0, 0, 6, 6]]
                labels = [1] + [o["class"] for o in frame[1:]] + [3]
                detections[key] = {"boxes": torch.tensor(np.array(boxes), dtype=torch.float32) + 0.5,
                                   "labels": torch.tensor(labels), "scores": torch.linspace(0.9, 0.3, len(labels))}
    torch.save(detections, tmp_path / "detections.pt")
    metrics = run(data, tmp_path / "sgdet", "-mode", "sgdet", "-detections", str(tmp_path / "detections.pt"),
                  "-epochs", "1", "-lr", "1e-3", "-max_eval_videos", "3")
    state = ckpt(tmp_path / "sgdet" / "checkpoint_final.tar")
    assert state["mode"] == "sgdet" and any(k.startswith("object_classifier.") for k in state["model"])
    assert metrics["val/with/frames"] > 0 and 0.0 <= metrics["val/no/R@100"] <= 1.0


def test_unreadable_frame_skips_the_video_or_raises_in_strict_mode(tmp_path):
    root = tmp_path / "data"
    write_dataset(root, videos=6, width=64, height=48, seed=7)
    sample = ActionGenome(root, "train")[0]
    Path(sample["frame_paths"][1]).write_bytes(b"not a png")
    metrics = run(root, tmp_path / "run", "-epochs", "1", "-eval_freq", "9", cache=tmp_path / "cache")
    log = (tmp_path / "run" / "logfile.txt").read_text()
    assert f"Skipping video {sample['video']}" in log and "skipped 1 bad samples" in log
    assert metrics["step"] == len(ActionGenome(root, "train"))
    with pytest.raises(BadSampleError, match=sample["frame_keys"][1].split("/")[1]):
        run(root, tmp_path / "strict", "-epochs", "1", "-strict_data", "True", cache=tmp_path / "cache2")


def test_train_detector_writes_detections_for_sgdet(tmp_path):
    from vidsgg import train_detector
    root = tmp_path / "data"
    write_dataset(root, videos=5, width=64, height=48, seed=2)
    path = train_detector.main(["-data_path", str(root), "-save_path", str(tmp_path / "det"), "-backbone_depth", "18",
                                "-min_size", "48", "-max_size", "64", "-epochs", "1", "-batch_size", "8",
                                "-rpn_proposals", "30", "-max_detections", "8", "-score_threshold", "0.0"])
    detections = torch.load(path, weights_only=True)
    keys = {k for split in ("train", "test") for v in ActionGenome(root, split, "sgdet").videos
            for k in v["frame_keys"]}
    assert set(detections) == keys
    one = next(iter(detections.values()))
    assert one["boxes"].shape[1] == 4 and len(one["labels"]) == len(one["scores"]) <= 8
    state = ckpt(tmp_path / "det" / "detector.tar")
    assert any(k.startswith("backbone.body.layer3") for k in state["model"])
