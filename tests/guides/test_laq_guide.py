"""The LAQ training guide (tests/guides/text/laq.txt), command by command, run from laq/ as the guide types them.

Only paths and sizes are substituted: the data folder and run folder, and `{size}` — the tiny model at 32 px and
a few steps — placed right after `experiment=...` so the guide's own overrides still win. Each command asserts
what the guide says it does (data mode and counts, the files it writes). Lines that cannot run here (wandb is not
installed) assert the clear message instead.
"""
import json
import re
from pathlib import Path

import pytest

from tests.guides.conftest import GuideCommand, assert_quotes_guide, guide_lines, run_guide_command

SIZE = ("model=laq_tiny data.image_size=32 model.patch_size=4 model.dim=32 model.heads=2 model.dim_head=16 "
        "model.spatial_depth=1 model.temporal_depth=1 data.num_workers=0 data.batch_size=4 training.max_steps=2 "
        "trainer.device=cpu logging.image_every=1000 data.folder={data} hydra.run.dir={run}")
NORMAL = ("experiment=laq_normal", "experiment=laq_normal " + SIZE)

# (guide line, command as the guide writes it, substitutions); the same command at other lines is listed in SAME.
SCENES = GuideCommand(11, "python scripts/2_train_laq.py experiment=laq_normal data=laq_scenes", (NORMAL,))
PAIRS = GuideCommand(14, "python scripts/2_train_laq.py experiment=laq_normal data=laq_pairs", (NORMAL,))
MULTI_SCALE = GuideCommand(43, "python scripts/2_train_laq.py experiment=laq_normal data=laq_pairs "
                               "data.offsets=[15,30,60]", (NORMAL,))
DEBUG = GuideCommand(53, "python scripts/2_train_laq.py experiment=laq_debug",
                     (("experiment=laq_debug", "experiment=laq_debug data.folder={data} hydra.run.dir={run}"),))
LR = GuideCommand(158, "python scripts/2_train_laq.py experiment=laq_normal training.optimizer.lr=5e-4", (NORMAL,))
BATCH = GuideCommand(163, "python scripts/2_train_laq.py experiment=laq_normal data.batch_size=64",
                     (NORMAL, ("data.batch_size=64", "data.batch_size=6")))
LONG = ("experiment=laq_normal", "experiment=laq_normal " + SIZE.replace("training.max_steps=2 ", "").replace(
    "data.batch_size=4", "data.batch_size=36") + " training.checkpoint_every_steps=100000")  # 1 step per epoch
EPOCHS = GuideCommand(168, "python scripts/2_train_laq.py experiment=laq_normal training.epochs=100", (LONG,))
WANDB = GuideCommand(173, "python scripts/2_train_laq.py experiment=laq_normal logging.use_wandb=true", (NORMAL,))
PROFILE = GuideCommand(178, "python scripts/2_train_laq.py experiment=laq_normal training.profiler.enabled=true "
                            "training.profiler.type=simple", (NORMAL,))
RESUME = GuideCommand(218, "python scripts/2_train_laq.py experiment=laq_normal "
                           "trainer.resume_from_checkpoint=./checkpoints/laq-epoch10.ckpt",
                      (LONG,))
SAME = {SCENES: (27, 143), PAIRS: (38, 148), MULTI_SCALE: (153,)}
FRAGMENTS = {202: "data.batch_size=16", 203: "data=laq_scenes", 208: "training.profiler.enabled=true",
             212: "seed=42", 213: "data=laq_pairs", 214: "data.sampling_seed=42"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """20 synthetic scenes of 32 frames (scene layout): 18 train / 2 val scenes with the guide's val_split 0.1."""
    from laq.synth import write_dataset
    root = tmp_path_factory.mktemp("laq_guide") / "frames"
    write_dataset(root, scenes=20, frames=32, image_size=48, square=6, step_px=1, actions=4)
    return root


def run(entry: GuideCommand, data: Path, run_dir: Path, expect_success: bool = True):
    assert_quotes_guide("laq", entry)
    return run_guide_command("laq", entry.command(data=str(data), run=str(run_dir)), timeout=600,
                             expect_success=expect_success)


def data_line(run_dir: Path) -> str:
    return next(line for line in (run_dir / "log.txt").read_text().splitlines() if "] Data: " in line)


def test_every_table_line_quotes_the_guide():
    for entry, lines in SAME.items():
        for line in lines:
            assert_quotes_guide("laq", GuideCommand(line, entry.text))
    for line, fragment in FRAGMENTS.items():  # the troubleshooting section's override fragments
        assert fragment in guide_lines("laq")[line - 1], line


@pytest.mark.slow
def test_scene_level_samples_one_pair_per_scene(data, tmp_path):
    run(SCENES, data, tmp_path / "run")
    assert "20 scenes (18 train / 2 val), 18 train samples per epoch, scene level, offsets [30]" in \
        data_line(tmp_path / "run")
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["train/steps"] == 2


@pytest.mark.slow
def test_pair_level_precomputes_every_pair(data, tmp_path):
    run(PAIRS, data, tmp_path / "run")  # 32 frames, offset 30: 2 pairs per scene
    assert "18 train / 2 val), 36 train samples per epoch, pair level, offsets [30]" in data_line(tmp_path / "run")


@pytest.mark.slow
def test_multi_scale_offsets_make_pairs_per_offset(data, tmp_path):
    run(MULTI_SCALE, data, tmp_path / "run")  # per 32-frame scene: 17 (offset 15) + 2 (30) + 0 (60)
    assert "342 train samples per epoch, pair level, offsets [15, 30, 60]" in data_line(tmp_path / "run")


def test_debug_uses_ten_samples(data, tmp_path):
    run(DEBUG, data, tmp_path / "run")
    assert "10 train samples per epoch, scene level" in data_line(tmp_path / "run")
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "Model laq_tiny" in log and "5 steps (1 per epoch)" in log  # 5 epochs of batch 8 over 10 samples


@pytest.mark.slow
def test_learning_rate_batch_size_and_epochs_reach_the_run(data, tmp_path):
    run(LR, data, tmp_path / "lr")
    assert "lr: 0.0005" in (tmp_path / "lr" / "config.yaml").read_text()
    run(BATCH, data, tmp_path / "batch")
    assert "batch_size: 6" in (tmp_path / "batch" / "config.yaml").read_text()


@pytest.mark.slow
def test_more_epochs_then_resume_from_laq_epoch10(data, tmp_path):
    """100 epochs of 1 step (36 pairs, batch 36) write laq-epoch10.ckpt ... laq-epoch100.ckpt; the guide's resume
    line (./checkpoints/laq-epoch10.ckpt, found in the experiment's earlier run folder) continues from it to
    laq_normal's 50 epochs."""
    runs = tmp_path / "runs" / "laq_normal"
    run(EPOCHS, data, runs / "2026-01-01_00-00-00")
    first = runs / "2026-01-01_00-00-00" / "checkpoints"
    assert {"laq-epoch10.ckpt", "laq-epoch100.ckpt", "last.pt"} <= {p.name for p in first.iterdir()}
    result = run(RESUME, data, runs / "2026-01-02_00-00-00")
    assert re.search(r"Resumed from .*2026-01-01_00-00-00/checkpoints/laq-epoch10.ckpt at step 10 \(epoch 10",
                     result.stdout)
    assert json.loads((runs / "2026-01-02_00-00-00" / "metrics.json").read_text())["train/steps"] == 50


@pytest.mark.slow
def test_wandb_line_says_what_to_install(data, tmp_path):
    result = run(WANDB, data, tmp_path / "run", expect_success=False)
    assert result.returncode != 0 and "logging.use_wandb=true needs the wandb package: pip install wandb" in \
        result.stderr


@pytest.mark.slow
def test_simple_profiler_writes_its_report(data, tmp_path):
    run(PROFILE, data, tmp_path / "run")
    report = (tmp_path / "run" / "profile_simple.txt").read_text()
    assert report.startswith("section") and {"data", "forward_backward", "optimizer"} <= {
        line.split()[0] for line in report.splitlines()[1:]}


def test_see_also_files_exist():
    root = Path(__file__).resolve().parents[2] / "laq"
    for line in guide_lines("laq")[225:230]:
        name = line.split("`")[1]
        assert (root / name).is_file(), name
