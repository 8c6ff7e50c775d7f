"""Each project's real entry point at a tiny synthetic size, as the SLURM launcher test runs it.

One table for the five projects, so that a change of a project's command line is made here only. Each entry says
how to write its synthetic data (the project's `synth` command), the training command (`steps` steps; `resume`
adds the project's resume-latest option), how many ranks it runs on, which log line shows that training is under
way (the test signals after it), and which file holds the final state that must be identical with and without an
interruption.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable


@dataclass(frozen=True)
class Project:
    name: str
    ranks: int                                           # 2: torchrun with gloo on CPU; 1: the script alone
    synth: Callable[[Path], list[list[str]]]             # data folder -> commands that write the synthetic data
    train: Callable[[Path, Path, int, bool], list[str]]  # (data, run folder, steps, resume) -> script and flags
    ready: str                                           # regex of a log line printed inside the training loop
    final: Callable[[Path], Path]                        # run folder -> the checkpoint written at the end


# ------------------------------------------------------------------------------------------------ laq (Hydra)
LAQ_TINY = ["experiment=laq_debug", "data.image_size=32", "model.patch_size=4", "model.dim=32", "model.heads=2",
            "model.dim_head=16", "model.spatial_depth=1", "model.temporal_depth=1", "data.num_workers=0",
            "logging.image_every=1000", "trainer.device=cpu", "data.offsets=[1,3]", "data.max_samples=null",
            "data.batch_size=4", "data.val_split=0.2", "training.epochs=100", "training.deterministic=true",
            "training.val_every_steps=1000", "training.checkpoint_every_steps=1000", "logging.log_every=1"]


def laq_train(data: Path, run: Path, steps: int, resume: bool) -> list[str]:
    return [str(ROOT / "laq/scripts/2_train_laq.py"), *LAQ_TINY, f"data.folder={data}", f"hydra.run.dir={run}",
            f"training.max_steps={steps}"] + (["trainer.resume_from_checkpoint=latest"] if resume else [])


# ------------------------------------------------------------------------------------------------ vae_latent
def vae_train(data: Path, run: Path, steps: int, resume: bool) -> list[str]:
    config = {"model_params": {"latent_dim": 4, "hidden_dims": [8, 16], "image_size": 16},
              "data_params": {"data_path": str(data), "train_batch_size": 4, "val_batch_size": 4, "num_workers": 0,
                              "val_fraction": 0.2, "frames_per_video": "all"},
              "exp_params": {"LR": 0.005, "kld_weight": 0.0001, "manual_seed": 3},
              "trainer_params": {"gpus": 0, "max_epochs": 1000, "max_steps": steps, "log_every_n_steps": 1},
              "logging_params": {"save_dir": str(run), "name": "run", "save_every_n_steps": 1000,
                                 "log_images_every_n_steps": 1000}}
    path = run.parent / f"{run.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return [str(ROOT / "vae_latent/train_ddp.py"), "--config", str(path)] + (["--resume", "auto"] if resume else [])


# ------------------------------------------------------------------------------------------------ shadow
def shadow_train(data: Path, run: Path, steps: int, resume: bool) -> list[str]:
    return [str(ROOT / "shadow/train.py"), "--data_dir", str(data), "--image_size", "32", "--batch_size", "2",
            "--mixed_precision", "no", "--num_workers", "0", "--max_iterations", str(steps), "--save_every", "1000",
            "--eval_every", "1000", "--log_every", "1", "--output_dir", str(run)] + \
        (["--resume_from", "latest"] if resume else [])


# ------------------------------------------------------------------------------------------------ stereo
def stereo_synth(data: Path) -> list[list[str]]:
    return [[PY, "-m", "stereo.synth", "--out", str(data / "train"), "--num", "16", "--height", "48", "--width", "80",
             "--max_disp", "24", "--seed", "0"],
            [PY, "-m", "stereo.synth", "--out", str(data / "val"), "--num", "2", "--height", "48", "--width", "80",
             "--max_disp", "24", "--seed", "1"]]


def stereo_train(data: Path, run: Path, steps: int, resume: bool) -> list[str]:
    config = json.loads((ROOT / "stereo/configs/train/stereo_tiny.json").read_text())
    config["data"]["datasets"][0]["path"] = str(data / "train")
    config["data"]["val_datasets"][0]["path"] = str(data / "val")
    config["data"]["image_sizes"] = [[64, 32]]  # [W, H]
    config["data"]["val_datasets"] = []
    config["model"].update({"vit_size": "vitt", "hidden_dims": [16, 16, 16], "train_iters": 2,
                            "valid_iters": 2})  # smallest FoundationStereo
    config["lr_scheduler"] = {"kind": "constant", "warmup_steps": 2}  # independent of --num_iterations
    path = run.parent / f"{run.name}.json"
    path.write_text(json.dumps(config))
    return [str(ROOT / "stereo/scripts/train.py"), "--config", str(path), "--workspace", str(run),
            "--batch_size_forward", "2", "--num_iterations", str(steps), "--log_every", "1", "--save_every", "1000",
            "--vis_every", "1000", "--enable_gradient_checkpointing", "false", "--deterministic", "true",
            "--seed", "3"] + (["--checkpoint", "latest"] if resume else [])


def stereo_final(run: Path) -> Path:
    return max((run / "checkpoint").glob("[0-9]*_optimizer.pt"))  # the training state of the last step


# ------------------------------------------------------------------------------------------------ vidsgg
VIDSGG_TINY = ["-backbone_depth", "18", "-image_size", "40", "-max_size", "56", "-proj_dim", "16", "-embed_dim", "8",
               "-hidden_dim", "32", "-temporal_layer", "1", "-num_heads", "4", "-union_dim", "16",
               "-bn_momentum", "0.1", "-device", "cpu", "-batch_size", "1", "-lr", "1e-3", "-eval_freq", "99",
               "-deterministic", "True", "-mode", "predcls", "-model", "sttran"]


def vidsgg_train(data: Path, run: Path, steps: int, resume: bool) -> list[str]:
    # `steps` counts epochs here: vidsgg has no step limit for STTran (6 training videos per rank per epoch).
    return [str(ROOT / "vidsgg/train.py"), "-distributed", "True", "-data_path", str(data), "-save_path", str(run),
            "-cache_dir", str(data / "cache"), *VIDSGG_TINY, "-epochs", str(steps)] + \
        (["-resume_from", "latest"] if resume else [])


PROJECTS = {
    "laq": Project("laq", 2,
                   lambda d: [[PY, "-m", "laq.synth", "--out", str(d), "--scenes", "40", "--frames", "6",
                               "--image_size", "32", "--square", "8", "--step_px", "2", "--actions", "3"]],
                   laq_train, r"step 2/", lambda run: run / "checkpoints" / "last.pt"),
    "vae_latent": Project("vae_latent", 2,
                          lambda d: [[PY, "-m", "laq.synth", "--out", str(d), "--scenes", "8", "--frames", "6",
                                      "--image_size", "32", "--square", "8", "--step_px", "2"]],
                          vae_train, r"epoch \d+ step 2 \|", lambda run: run / "run" / "checkpoints" / "vae_final.pt"),
    "shadow": Project("shadow", 2, lambda d: [[PY, "-m", "shadow.synth", "--out", str(d), "--num", "24",
                                               "--image_size", "32", "--workers", "1"]],
                      shadow_train, r"step 2/", lambda run: run / "latest_model.pt"),
    "stereo": Project("stereo", 2, stereo_synth, stereo_train, r"step 2 ", stereo_final),
    "vidsgg": Project("vidsgg", 2, lambda d: [[PY, "-m", "vidsgg.synth", "--out", str(d), "--videos", "16",
                                               "--width", "64", "--height", "48", "--seed", "7"]],
                      vidsgg_train, r"Epoch 1/", lambda run: run / "checkpoint_final.tar"),
}
# Steps (vidsgg: epochs) of the uninterrupted run; the interrupted one is stopped after `ready`, then resumed.
STEPS = {"laq": 12, "vae_latent": 12, "shadow": 10, "stereo": 8, "vidsgg": 3}

