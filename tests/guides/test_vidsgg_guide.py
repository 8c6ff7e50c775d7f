"""The vidsgg training guide (tests/guides/text/vidsgg.txt), command by command, run from vidsgg/ as a user would.

Each entry quotes the guide's command at its line; the substitutions change only paths (the synthetic data, a
temporary run folder instead of vidsgg/output/) and sizes (a ResNet-18 at 40 px, widths of 16, one or a few
epochs, evaluation on 2 videos), which go right after `python train.py` so that every flag the guide writes still
wins. The guide's own values (-lr, -spatial_layer 4, -num_mixtures 3, ...) are asserted in what the run wrote.
Commands that depend on each other (progressive training, AG -> EASG, the checkpoint tree and its resume) share
one test, so that pytest-xdist never splits them. Parts of the guide that are Python sketches rather than
commands (curriculum, early stopping, Optuna, manual checkpointing, profiling) have their counterparts tested in
tests/vidsgg (test_vidsgg_curriculum.py, test_vidsgg_train.py, test_vidsgg_tune.py, test_vidsgg_resume.py).
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

from tests.guides.conftest import GuideCommand, assert_quotes_guide, guide_lines, run_guide_command

PROJECT = "vidsgg"
SIZES = ("-backbone_depth 18 -image_size 40 -max_size 56 -proj_dim 16 -embed_dim 8 -hidden_dim 32 -temporal_layer 1 "
         "-num_heads 4 -union_dim 16 -bn_momentum 0.1 -max_eval_videos 2 -epochs 1 -save_path {run}")
TRAIN = ("python train.py", "python train.py " + SIZES)
AG_DATA = ("-data_path data/action_genome", "-data_path {data}")
NO_DATA = ("python train.py", "python train.py -data_path {data} " + SIZES)  # the guide leaves -data_path out


def entry(line: int, text: str, *substitute: tuple[str, str]) -> GuideCommand:
    command = GuideCommand(line, text, tuple(substitute))
    assert_quotes_guide(PROJECT, command)
    return command


def run(command: GuideCommand, expect_success: bool = True, timeout: float = 300, **values: str):
    return run_guide_command(PROJECT, command.command(**values), expect_success=expect_success, timeout=timeout)


def ckpt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def config(run_dir: Path) -> dict:
    return json.loads((run_dir / "config.json").read_text())


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """The synthetic Action Genome, written with the README's command from vidsgg/ (its feature cache, the
    default <data_path>/feature_cache, is shared by every run of this module)."""
    root = tmp_path_factory.mktemp("guide") / "action_genome"
    run_guide_command(PROJECT, f"python -m vidsgg.synth --out {root} --videos 14 --width 64 --height 48 --seed 7")
    return root


# ---------------------------------------------------------------------------------------- Basic Training
@pytest.mark.slow
def test_simple_and_complete_training_commands(data, tmp_path):
    simple = entry(25, "python train.py -mode predcls -datasize large -data_path data/action_genome -model sttran",
                   TRAIN, AG_DATA)
    run(simple, data=str(data), run=str(tmp_path / "simple"))
    log = (tmp_path / "simple" / "logfile.txt").read_text()
    # The log lines of the guide's "Log Content Example" (line 262): loss, lr and time; recalls in percent.
    assert re.search(r"Epoch 1/1 - Loss: \d+\.\d+ - LR: [\d.e-]+ - Time: \d+s", log)
    assert re.search(r"Epoch 1/1 - Eval - Recall@10: \d+\.\d - Recall@20: \d+\.\d", log)
    assert {"checkpoint_final.tar", "checkpoint_best.tar", "metrics.json"} <= {p.name for p in (tmp_path / "simple").iterdir()}

    complete = entry(34, "python train.py -mode predcls -datasize large -data_path data/action_genome -model sttran "
                         "-lr 1e-4 -batch_size 1 -epochs 100 -save_path output/sttran_predcls",
                     TRAIN, AG_DATA, ("-epochs 100", "-epochs 2"), ("output/sttran_predcls", "{out}/sttran_predcls"))
    run(complete, data=str(data), run=str(tmp_path / "unused"), out=str(tmp_path))
    saved = config(tmp_path / "sttran_predcls")
    assert (saved["lr"], saved["batch_size"], saved["epochs"]) == (1e-4, 1, 2)
    assert ckpt(tmp_path / "sttran_predcls" / "checkpoint_final.tar")["epoch"] == 2


def test_parameter_tables_are_the_defaults():
    """Guide lines 50-106: the defaults of the two parameter tables (STTran's own are named in the README)."""
    from vidsgg.option_checks import parse_train_args
    args = parse_train_args([])
    assert (args.mode, args.model, args.datasize, args.lr, args.batch_size, args.epochs) == \
        ("predcls", "sttran", "large", 1e-4, 1, 100)
    assert (args.weight_decay, args.clip_grad, args.warmup_steps, args.scheduler, args.save_freq, args.eval_freq) == \
        (1e-5, 5.0, 1000, "step", 10, 5)
    text = "\n".join(guide_lines(PROJECT)[49:106])
    for flag, default in (("-lr", "1e-4"), ("-epochs", "100"), ("-weight_decay", "1e-5"), ("-warmup_steps", "1000"),
                          ("-scheduler", "step"), ("-save_freq", "10"), ("-eval_freq", "5")):
        assert re.search(rf"``{flag}``\n\s+- {re.escape(default)}\n", text), flag


# ------------------------------------------------------------------------------------ Model-Specific Training
@pytest.mark.slow
def test_sttran_standard_and_optimized_configurations(data, tmp_path):
    standard = entry(118, "python train.py -mode predcls -model sttran -data_path data/action_genome -lr 1e-4 "
                          "-spatial_layer 4 -temporal_layer 2 -hidden_dim 512", TRAIN, AG_DATA)
    run(standard, data=str(data), run=str(tmp_path / "standard"))
    weights = ckpt(tmp_path / "standard" / "checkpoint_final.tar")["model"]
    assert "transformer.spatial.3.ffn.0.weight" in weights and "transformer.spatial.4.ffn.0.weight" not in weights
    assert "transformer.temporal.1.ffn.0.weight" in weights and "transformer.temporal.2.ffn.0.weight" not in weights
    assert weights["transformer.spatial.0.ffn.0.weight"].shape[0] == 512

    optimized = entry(131, "python train.py -mode predcls -model sttran -data_path data/action_genome -lr 5e-5 "
                           "-batch_size 2 -warmup_steps 2000 -scheduler cosine", TRAIN, AG_DATA)
    run(optimized, data=str(data), run=str(tmp_path / "optimized"))
    saved = config(tmp_path / "optimized")
    assert (saved["lr"], saved["batch_size"], saved["warmup_steps"], saved["scheduler"]) == (5e-5, 2, 2000, "cosine")
    group = ckpt(tmp_path / "optimized" / "checkpoint_final.tar")["optimizer"]["param_groups"][0]
    steps = ckpt(tmp_path / "optimized" / "checkpoint_final.tar")["step"]
    assert group["lr"] == pytest.approx(5e-5 * (steps + 1) / 2000)  # still warming up


@pytest.mark.slow
def test_tempura_basic_and_advanced_configurations(data, tmp_path):
    basic = entry(147, "python train.py -mode predcls -model tempura -data_path data/action_genome -lr 1e-4 "
                       "-num_mixtures 3 -uncertainty_threshold 0.5", TRAIN, AG_DATA)
    run(basic, data=str(data), run=str(tmp_path / "basic"))
    state = ckpt(tmp_path / "basic" / "checkpoint_final.tar")
    assert state["model_config"]["num_mixtures"] == 3 and state["model_config"]["uncertainty_threshold"] == 0.5

    advanced = entry(159, "python train.py -mode predcls -model tempura -data_path data/action_genome -lr 8e-5 "
                          "-gmm_regularization 0.01 -temporal_window 5", TRAIN, AG_DATA)
    run(advanced, data=str(data), run=str(tmp_path / "advanced"))
    state = ckpt(tmp_path / "advanced" / "checkpoint_final.tar")
    # Without -tracking, -temporal_window is the temporal decoder's window (README, departures).
    assert state["model_config"]["window"] == 5 and state["model_config"]["gmm_regularization"] == 0.01
    assert state["model"]["transformer.frame_embedding.weight"].shape[0] == 5
    assert "-temporal_window 5 without -tracking True" in (tmp_path / "advanced" / "logfile.txt").read_text()


@pytest.mark.slow
def test_scenellm_basic_and_language_model_fine_tuning(data, tmp_path):
    sizes = ("python train.py", "python train.py " + SIZES + " -latent_dim 16 -codebook_size 32 -ot_step 8 "
             "-vqvae_epochs 1")
    basic = entry(174, "python train.py -mode predcls -model scenellm -data_path data/action_genome -lr 5e-5 "
                       "-batch_size 1", sizes, AG_DATA)
    run(basic, data=str(data), run=str(tmp_path / "basic"))
    # The whole model is trained: the VQ-VAE first (its own folder), then the scene-graph stage from its weights.
    vqvae = ckpt(tmp_path / "basic" / "vqvae" / "checkpoint_final.tar")
    final = ckpt(tmp_path / "basic" / "checkpoint_final.tar")
    best = ckpt(tmp_path / "basic" / "checkpoint_best.tar")
    assert vqvae["config"]["scenellm_stage"] == "vqvae"
    assert final["config"]["scenellm_stage"] == best["config"]["scenellm_stage"] == "stage1"
    encoder = "vqvae.encoder.0.weight"
    assert torch.equal(vqvae["model"][encoder], final["model"][encoder])  # frozen after its stage

    fine_tune = entry(185, "python train.py -mode predcls -model scenellm -data_path data/action_genome -lr 1e-5 "
                           "-llm_lr 1e-6 -freeze_llm_epochs 10", sizes, AG_DATA)
    run(fine_tune, data=str(data), run=str(tmp_path / "llm"))
    final = ckpt(tmp_path / "llm" / "checkpoint_final.tar")
    assert final["config"]["scenellm_stage"] == "stage2" and final["config"]["llm_lr"] == 1e-6
    lora_b = [v for k, v in final["model"].items() if "lora_B" in k]
    assert lora_b and all(not v.any() for v in lora_b)  # the adapters stay frozen for the first 10 epochs


# ---------------------------------------------------------------------------------------- Training Strategies
@pytest.mark.slow
def test_progressive_training_predcls_sgcls_sgdet(data, tmp_path):
    predcls = entry(204, "python train.py -mode predcls -model sttran -epochs 50", NO_DATA, ("-epochs 50", "-epochs 1"))
    run(predcls, data=str(data), run=str(tmp_path / "predcls"))
    shutil.copy(tmp_path / "predcls" / "checkpoint_best.tar", tmp_path / "checkpoint_predcls.pth")
    sgcls = entry(207, "python train.py -mode sgcls -model sttran -resume_from checkpoint_predcls.pth -epochs 25",
                  NO_DATA, ("-epochs 25", "-epochs 1"), ("checkpoint_predcls.pth", "{out}/checkpoint_predcls.pth"))
    run(sgcls, data=str(data), run=str(tmp_path / "sgcls"), out=str(tmp_path))
    assert "Progressive training" in (tmp_path / "sgcls" / "logfile.txt").read_text()
    state = ckpt(tmp_path / "sgcls" / "checkpoint_final.tar")
    assert state["mode"] == "sgcls" and any(k.startswith("object_classifier.") for k in state["model"])
    shutil.copy(tmp_path / "sgcls" / "checkpoint_final.tar", tmp_path / "checkpoint_sgcls.pth")
    # SGDET needs detections: the guide's command fails with what to add (README: train_detector.py first).
    sgdet = entry(210, "python train.py -mode sgdet -model sttran -resume_from checkpoint_sgcls.pth -epochs 25",
                  NO_DATA, ("-epochs 25", "-epochs 1"), ("checkpoint_sgcls.pth", "{out}/checkpoint_sgcls.pth"))
    result = run(sgdet, expect_success=False, data=str(data), run=str(tmp_path / "sgdet"), out=str(tmp_path))
    assert result.returncode == 2
    assert "-mode sgdet needs -detections FILE (write one with vidsgg/train_detector.py)" in result.stderr


@pytest.mark.slow
def test_multi_dataset_action_genome_then_easg(data, tmp_path):
    ag = entry(220, "python train.py -mode predcls -data_path data/action_genome -epochs 80", TRAIN, AG_DATA,
               ("-epochs 80", "-epochs 1"))
    run(ag, data=str(data), run=str(tmp_path / "ag"))
    shutil.copy(tmp_path / "ag" / "checkpoint_final.tar", tmp_path / "ag_checkpoint.pth")
    easg_root = tmp_path / "EASG"
    run_guide_command(PROJECT, f"python -m vidsgg.easg.synth --out {easg_root} --clips 6 --seed 2")
    easg = entry(223, "python train.py -mode predcls -data_path data/EASG -resume_from ag_checkpoint.pth -epochs 20",
                 TRAIN, ("data/EASG", "{easg}"), ("ag_checkpoint.pth", "{out}/ag_checkpoint.pth"),
                 ("-epochs 20", "-epochs 1"))
    run(easg, easg=str(easg_root), run=str(tmp_path / "easg"), out=str(tmp_path))
    saved = config(tmp_path / "easg")
    assert (saved["dataset"], saved["mode"]) == ("easg", "edgecls")
    log = (tmp_path / "easg" / "logfile.txt").read_text()
    assert "holds the EASG layout" in log and "Progressive training" in log
    assert "val/with/R@20" in json.loads((tmp_path / "easg" / "metrics.json").read_text())


# ------------------------------------------------------------------------------ Monitoring, Optimization, DDP
def test_tensorboard_tracks_what_the_guide_lists(data, tmp_path):
    """Lines 275-283: training and validation loss, learning rate, gradient norms, weight histograms, metrics."""
    simple = entry(25, "python train.py -mode predcls -datasize large -data_path data/action_genome -model sttran",
                   TRAIN, AG_DATA)
    run(simple, data=str(data), run=str(tmp_path / "run"))
    scalars, histograms = set(), set()
    for path in (tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                kind = value.metadata.plugin_data.plugin_name
                (histograms if kind == "histograms" else scalars).add(value.tag)
    assert {"train/loss", "val/loss", "train/lr", "train/grad_norm", "val/with/R@20", "val/frames_skipped"} <= scalars
    assert "weights/attention_head.weight" in histograms
    assert shutil.which("tensorboard", path=str(Path(__import__("sys").executable).parent))  # `tensorboard --logdir`


@pytest.mark.slow
def test_mixed_precision_and_gradient_accumulation(data, tmp_path):
    amp = entry(308, "python train.py -mode predcls -model sttran -use_amp True -opt_level O1", NO_DATA)
    run(amp, data=str(data), run=str(tmp_path / "amp"))
    assert (config(tmp_path / "amp")["use_amp"], config(tmp_path / "amp")["opt_level"]) == (True, "O1")
    accumulate = entry(321, "python train.py -mode predcls -model sttran -batch_size 1 -accumulate_grad_batches 4  "
                            "# Effective batch size: 4", ("-accumulate_grad_batches 4", "-accumulate_grad_batches 4 "
                                                          "-data_path {data} " + SIZES))
    run(accumulate, data=str(data), run=str(tmp_path / "accumulate"))
    from vidsgg.data.action_genome import ActionGenome
    videos = len(ActionGenome(data, "train"))
    assert ckpt(tmp_path / "accumulate" / "checkpoint_final.tar")["step"] == -(-videos // 4)


@pytest.mark.slow
def test_torch_distributed_launch_with_several_processes(data, tmp_path):
    launch = entry(335, "python -m torch.distributed.launch --nproc_per_node=4 train.py -mode predcls -model sttran "
                        "-distributed True", ("--nproc_per_node=4", "--nproc_per_node=2"),
                   ("train.py", "train.py -data_path {data} " + SIZES))
    result = run(launch, data=str(data), run=str(tmp_path / "ddp"))
    state = ckpt(tmp_path / "ddp" / "checkpoint_final.tar")
    assert len(state["rng"]) == 2 and state["world_size"] == 2, result.stdout[-2000:]


def test_grid_search_loop(data, tmp_path):
    """Lines 351-355, the loop with one value of each list (a size): each run gets its own timestamped folder."""
    snippet = "\n".join(line.strip() for line in guide_lines(PROJECT)[350:355])
    assert snippet == ("for lr in 1e-5 1e-4 5e-4; do\nfor batch_size in 1 2 4; do\n"
                       "python train.py -lr $lr -batch_size $batch_size\ndone\ndone")
    command = snippet.replace("1e-5 1e-4 5e-4", "1e-4").replace("1 2 4", "2").replace(
        "python train.py", "python train.py -data_path {data} " + SIZES.replace(" -save_path {run}", ""))
    cwd_output = Path(__file__).resolve().parents[2] / PROJECT / "output"  # git-ignored
    existed = cwd_output.exists()
    before = set(cwd_output.glob("action_genome/*"))
    try:
        run_guide_command(PROJECT, command.format(data=data))
        made = set(cwd_output.glob("action_genome/*")) - before
        assert len(made) == 1 and re.fullmatch(r"sttran_predcls_\d{8}_\d{6}", next(iter(made)).name)
        assert config(next(iter(made)))["batch_size"] == 2  # the guide's log folder layout (line 256)
    finally:
        for folder in set(cwd_output.glob("action_genome/*")) - before:
            shutil.rmtree(folder)
        if not existed:
            shutil.rmtree(cwd_output, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ Checkpointing
@pytest.mark.slow
def test_automatic_checkpoints_and_resume(data, tmp_path):
    """Lines 401-405: 20 epochs at the default -save_freq 10; then line 430 resumes the epoch-10 checkpoint."""
    complete = entry(34, "python train.py -mode predcls -datasize large -data_path data/action_genome -model sttran "
                         "-lr 1e-4 -batch_size 1 -epochs 100 -save_path output/sttran_predcls",
                     TRAIN, AG_DATA, ("-epochs 100", "-epochs 20"),
                     ("output/sttran_predcls", "{out}/sttran_predcls"))
    run(complete, data=str(data), run=str(tmp_path / "unused"), out=str(tmp_path))
    files = {p.name for p in (tmp_path / "sttran_predcls").iterdir()}
    assert {"checkpoint_epoch_10.tar", "checkpoint_epoch_20.tar", "checkpoint_best.tar", "checkpoint_final.tar"} <= files
    (tmp_path / "output").mkdir()
    shutil.copy(tmp_path / "sttran_predcls" / "checkpoint_epoch_10.tar", tmp_path / "output" / "checkpoint_epoch_50.tar")
    resume = entry(430, "python train.py -mode predcls -model sttran -resume_from output/checkpoint_epoch_50.tar",
                   ("python train.py", "python train.py -data_path {data} " + SIZES.replace(" -save_path {run}", "")
                    + " -epochs 20"), ("output/", "{out}/output/"))
    run(resume, data=str(data), out=str(tmp_path))
    log = (tmp_path / "output" / "logfile.txt").read_text()  # the run continues in the checkpoint's folder
    assert "Resumed from" in log and "Epoch 11/20 - Loss" in log and "Epoch 10/20 - Loss" not in log
    resumed = ckpt(tmp_path / "output" / "checkpoint_final.tar")
    uninterrupted = ckpt(tmp_path / "sttran_predcls" / "checkpoint_final.tar")
    assert resumed["step"] == uninterrupted["step"] and resumed["loss"] == uninterrupted["loss"]
    for key, value in uninterrupted["model"].items():
        assert torch.equal(value, resumed["model"][key]), key


def test_troubleshooting_flags_exist():
    """Lines 450-457: -clip_grad 5.0, -warmup_steps 1000, -batch_size 1 are flags of train.py."""
    from vidsgg.option_checks import parse_train_args
    args = parse_train_args(["-clip_grad", "5.0", "-warmup_steps", "1000", "-batch_size", "1"])
    assert (args.clip_grad, args.warmup_steps, args.batch_size) == (5.0, 1000, 1)
    text = "\n".join(guide_lines(PROJECT)[449:457])
    assert "``-clip_grad 5.0``" in text and "``-warmup_steps 1000``" in text and "``-batch_size 1``" in text
