"""Released reference checkpoints ({'state_dict': ...} in STTran's / TEMPURA's / STKET's key names, TEMPURA's
memories beside) through the entry points a user runs: test.py as a subprocess evaluates one and gets exactly the
recalls the same weights give from the project's own checkpoint; train.py -init_from / -resume_from start a new run
from exactly those weights.

The released files are made from tiny trained runs: their weights renamed to the reference's keys by inverting the
import's rules on the key manifest of the reference build (tests/vidsgg/fixtures/), as a released file names them
(with the object classifier the reference builds in every mode, at its paper shapes). The inversion uses the
import's own rules, so these tests guard the scripts' paths; that the rules put each reference tensor in the right
place is test_vidsgg_reference.py's (outputs equal to the reference code's)."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vidsgg import test as test_script
from vidsgg import train
from vidsgg.models.reference import RULES, _rename

from tests.vidsgg.reference_weights import rule_tensor

FIXTURES = Path(__file__).parent / "fixtures"
WIDTHS = ["-backbone_depth", "18", "-image_size", "40", "-max_size", "56", "-proj_dim", "16", "-embed_dim", "8",
          "-hidden_dim", "32", "-num_heads", "4", "-union_dim", "16"]
MIXTURES = 2  # TEMPURA's
MODELS = {
    "sttran": ["-model", "sttran", "-temporal_layer", "1"],
    "tempura": ["-model", "tempura", "-temporal_layer", "1", "-num_mixtures", str(MIXTURES), "-mem_feat_lambda", "0.3"],
    "stket": ["-model", "stket", "-enc_layer_num", "1", "-dec_layer_num", "1", "-use_spatial_prior",
              "-use_temporal_prior", "-pred_contact_threshold", "0.5"],
}


def released_file(weights: dict, name: str) -> dict:
    """The project's weights as the reference's released file: {'state_dict'} under the reference's key names (the
    inverse of import_reference's renaming, read off the reference build's manifest) with the PredCLS-unused object
    classifier the reference builds, at its paper shapes; TEMPURA: per-component GMM layers, memories beside."""
    weights = dict(weights)
    manifest = torch.load(FIXTURES / f"{name}.pt", weights_only=True)["modes"]["predcls"]["manifest"]
    theirs = {_rename(key, RULES[name]): key for key in manifest}
    released = {}
    if name == "tempura":  # our stacked mean/variance/weight layers -> the reference's mu_k / var_k / pi_k
        stacked = [k for k in weights if re.fullmatch(r"gmm\.\w+\.(mean|variance|weight)\.(weight|bias)", k)]
        for key in stacked:
            head, kind, part = key.rsplit(".", 2)
            short = {"mean": "mu", "variance": "var", "weight": "pi"}[kind]
            for k, chunk in enumerate(weights.pop(key).chunk(MIXTURES)):
                weights[f"{head}.heads.{short}_{k + 1}.{part}"] = chunk
        released["rel_memory"] = {m.group(1): weights.pop(k) for k in list(weights)
                                  if (m := re.fullmatch(r"rel_memory\.(\w+)_prototypes", k))}
        weights.pop("rel_memory.ready")
    missing = [k for k in weights if k not in theirs and not k.endswith("num_batches_tracked")]
    assert not missing, f"no reference name for {missing}"
    state = {theirs[k]: v for k, v in weights.items() if k in theirs}
    state.update({k: rule_tensor(k, shape) for k, shape in manifest.items() if k.startswith("object_classifier.")})
    return {"state_dict": state, **released}


@pytest.fixture(scope="module")
def trained(train_data, tmp_path_factory):
    """{model: its tiny PredCLS run folder}, two epochs each (checkpoint_final.tar)."""
    runs = {}
    for name, flags in MODELS.items():
        runs[name] = tmp_path_factory.mktemp(f"run_{name}")
        train.main(["-data_path", str(train_data), "-save_path", str(runs[name]), "-cache_dir",
                    str(train_data / "cache"), *WIDTHS, *flags, "-epochs", "2", "-lr", "3e-3", "-eval_freq", "2",
                    "-warmup_steps", "0", "-max_eval_videos", "1", "-seed", "1", "-bn_momentum", "0.1"])
    return runs


def run_test_script(*argv) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).parents[2]))
    return subprocess.run([sys.executable, test_script.__file__, *argv], env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_test_script_evaluates_a_released_checkpoint_as_its_native_one(name, trained, train_data, tmp_path):
    run = trained[name]
    native = torch.load(run / "checkpoint_final.tar", weights_only=True)
    released = tmp_path / "predcls.tar"
    torch.save(released_file(native["model"], name), released)
    data = ["-data_path", str(train_data), "-cache_dir", str(train_data / "cache"), *WIDTHS[:6]]  # + backbone
    ours = run_test_script(*data, "-model_path", str(run / "checkpoint_final.tar"), "-output", str(tmp_path / "ours"))
    assert ours.returncode == 0, ours.stderr[-3000:]
    result = run_test_script(*data, "-model_path", str(released), "-model", name, "-mode", "predcls", *WIDTHS[6:],
                             *MODELS[name][2:], "-output", str(tmp_path / "released"))
    assert result.returncode == 0, result.stderr[-3000:]
    log = (tmp_path / "released" / "test_log.txt").read_text()
    assert f"Evaluating the released {name} weights {released} (predcls)" in log
    from_released = json.loads((tmp_path / "released" / "metrics.json").read_text())
    from_native = json.loads((tmp_path / "ours" / "metrics.json").read_text())
    recalls = [k for k in from_native if "/R@" in k or "/mR@" in k]
    assert len(recalls) >= 12 and from_native["test/with/R@20"] > 0
    assert {k: from_released[k] for k in recalls} == {k: from_native[k] for k in recalls}
    row = next(line.split("] ", 1)[1].split() for line in log.splitlines() if line.split("] ", 1)[-1].startswith("with "))
    assert row[1] == f"{100 * from_native['test/with/R@10']:.2f}"  # the table test.py logs: the same numbers


def test_train_script_starts_from_a_released_checkpoint(trained, train_data, tmp_path, capsys):
    """-init_from predcls.tar (and -resume_from predcls.tar, which says it is weights only) start a new run at step
    0 with a fresh optimizer from exactly the file's weights: at a negligible lr the trained weights come out (a
    fresh init is ~0.1 away), and the whole run equals -init_from of the same weights' project checkpoint."""
    native_path = trained["sttran"] / "checkpoint_final.tar"
    native = torch.load(native_path, weights_only=True)
    released = tmp_path / "predcls.tar"
    torch.save(released_file(native["model"], "sttran"), released)

    def run(folder, *flags):
        train.main(["-data_path", str(train_data), "-save_path", str(tmp_path / folder), "-cache_dir",
                    str(train_data / "cache"), *WIDTHS, *MODELS["sttran"], "-bn_momentum", "0.1", "-lr", "1e-9",
                    "-scheduler", "plateau", "-warmup_steps", "0", "-eval_freq", "9", "-max_eval_videos", "1",
                    *flags])
        return torch.load(tmp_path / folder / "checkpoint_final.tar", weights_only=True)

    from_released = run("init", "-epochs", "1", "-init_from", str(released))
    steps = from_released["step"]
    assert steps == native["step"] // 2  # one epoch of this run (the native run had two): counted from 0
    assert all(s["step"] == steps for s in from_released["optimizer"]["state"].values())  # a fresh optimizer
    for key, value in native["model"].items():
        if value.is_floating_point() and "running_" not in key:  # BatchNorm statistics move in any training
            assert torch.allclose(from_released["model"][key], value, rtol=0, atol=1e-6), key
    assert "Initialised from the released sttran weights" in (tmp_path / "init" / "logfile.txt").read_text()
    from_native = run("init_native", "-epochs", "1", "-init_from", str(native_path))
    via_resume = run("resume", "-epochs", "1", "-resume_from", str(released))
    for other in (from_native, via_resume):
        for key, value in from_released["model"].items():
            assert torch.equal(other["model"][key], value), key
    assert "is a released reference checkpoint: it holds weights only" in \
        (tmp_path / "resume" / "logfile.txt").read_text()
    # The same command line resumed (a requeued job): the run's own checkpoint, -init_from unused.
    continued = run("init", "-epochs", "2", "-init_from", str(released), "-resume_from", "latest")
    assert continued["step"] == 2 * steps
    assert "-init_from" in (log := (tmp_path / "init" / "logfile.txt").read_text()) and "not used" in log

    bad = tmp_path / "bad.tar"
    torch.save({"state_dict": {"vr_fc.weight": torch.zeros(2)}}, bad)
    with pytest.raises(SystemExit, match=rf"{bad}: .*are not in the file"):
        run("bad", "-epochs", "1", "-init_from", str(bad))
    for flags, message in ((["-init_from", str(tmp_path / "missing.tar")], "-init_from: file not found"),
                           (["-init_from", str(released), "-resume_from", str(native_path)], "both give the weights")):
        with pytest.raises(SystemExit):
            run("refused", "-epochs", "1", *flags)
        assert message in capsys.readouterr().err
