"""TEMPURA: forward/backward per mode, uncertainties, every TEMPURA flag changing the model or the loss, flags
refused for other models, learning beats random weights, and the memory surviving a resume."""
import pytest
import torch

from vidsgg import test as test_script
from vidsgg import train
from vidsgg.models.build import build_model
from vidsgg.options import train_parser, validate

from tests.vidsgg.test_vidsgg_models import tiny_entry
from tests.vidsgg.test_vidsgg_train import TINY, ckpt, run


def tempura(*flags, mode="predcls"):
    torch.manual_seed(0)
    parser = train_parser()
    detections = ["-detections", "unused.pt"] if mode == "sgdet" else []
    args = validate(parser.parse_args(["-model", "tempura", "-mode", mode, *TINY, *detections, *flags]), parser)
    return build_model(args, 32, 8)


def entry():
    torch.manual_seed(1)
    return tiny_entry(feature_dim=32, union_channels=8)


@pytest.mark.parametrize("mode", ["predcls", "sgcls", "sgdet"])
def test_forward_backward_and_uncertainties(mode):
    model = tempura("-tracking", "True", mode=mode)
    e = entry()
    out = model(e)
    assert out["attention_distribution"].shape == (8, 3) and out["contacting_distribution"].shape == (8, 17)
    torch.testing.assert_close(out["attention_distribution"].exp().sum(1), torch.ones(8))  # log-probabilities
    for name in ("attention", "spatial", "contacting"):
        assert (out[f"{name}_aleatoric"] >= 0).all() and (out[f"{name}_epistemic"] >= 0).all()
    losses = model.compute_losses(out, e, bce=False)
    assert ("object" in losses) == (mode != "predcls") and "consistency" in losses
    sum(losses.values()).backward()
    assert model.gmm["spatial"].mean.weight.grad.abs().sum() > 0
    assert model.tracker.attention.in_proj_weight.grad.abs().sum() > 0
    model.eval()
    assert torch.equal(model(e)["spatial_distribution"], model(e)["spatial_distribution"])  # test: the means


def test_mixture_and_selection_flags_shape_the_model():
    assert tempura("-num_mixtures", "3").gmm["contacting"].mean.out_features == 17 * 3
    assert tempura().selector is None and tempura("-mem_feat_selection", "automated").selector is not None
    assert tempura().tracker is None and tempura("-tracking", "True").tracker is not None


def test_memory_lambda_fusion_and_weighting():
    e = entry()
    outputs = {}
    for lam in ("0.0", "0.9"):
        model = tempura("-mem_feat_lambda", lam).eval()
        sums, weights = torch.zeros(26, model.config.dim), torch.zeros(26)
        model.accumulate_memory(model(e), e, sums, weights)
        model.set_memory(sums, weights)
        assert bool(model.memory_ready) and torch.allclose(model.memory[weights > 0], (sums / weights[:, None])[weights > 0])
        outputs[lam] = model(e)["spatial_distribution"]
    base = tempura().eval()(e)["spatial_distribution"]
    torch.testing.assert_close(outputs["0.0"], base)          # λ = 0: the memory has no effect
    assert not torch.allclose(outputs["0.9"], base)
    early = tempura("-mem_fusion", "early").eval()
    assert early(e)["memory_source"].shape == (8, early.config.dim)
    assert not torch.allclose(early(e)["memory_source"], tempura().eval()(e)["memory_source"])
    # Weighting: uncertainty weights shrink the prototype weights; a tiny threshold drops every pair.
    simple, al = tempura().eval(), tempura("-rel_mem_weight_type", "al").eval()
    weights = {}
    for name, model, threshold in (("simple", simple, None), ("al", al, None)):
        w = torch.zeros(26)
        model.accumulate_memory(model(e), e, torch.zeros(26, model.config.dim), w)
        weights[name] = w
    assert (weights["al"] <= weights["simple"]).all() and weights["al"].sum() < weights["simple"].sum()
    strict = tempura("-uncertainty_threshold", "1e-6").eval()
    w = torch.zeros(26)
    strict.accumulate_memory(strict(e), e, torch.zeros(26, strict.config.dim), w)
    assert w.sum() == 0


def test_loss_flags_change_the_loss():
    e = entry()

    def losses(*flags):
        model = tempura(*flags).eval()
        return model.compute_losses(model(e), e, bce=False)

    base = losses()
    assert "gmm_regularization" not in base and losses("-gmm_regularization", "0.5")["gmm_regularization"] > 0
    assert not torch.isclose(losses("-rel_loss_weighting", "al")["spatial"], base["spatial"])
    euc = losses("-tracking", "True")["consistency"]
    assert torch.isclose(losses("-tracking", "True", "-lambda_con", "2")["consistency"], 2 * euc)
    assert not torch.isclose(losses("-tracking", "True", "-obj_con_loss", "info_nce")["consistency"], euc)


def test_temporal_window_limits_tracking():
    e = entry()
    model = tempura("-tracking", "True", "-temporal_window", "1").eval()  # each box only sees itself
    frames, labels = e["boxes"][:, 0].long(), e["labels"]
    out = model.tracker(e["features"], frames, labels)
    changed = e["features"].clone()
    changed[0] += 3.0  # the person of frame 0: with window 1 the person of frame 1 must not change
    out2 = model.tracker(changed, frames, labels)
    assert torch.allclose(out[3], out2[3])
    wide = tempura("-tracking", "True", "-temporal_window", "4").eval()
    assert not torch.allclose(wide.tracker(e["features"], frames, labels)[3], wide.tracker(changed, frames, labels)[3])


def test_flags_refused_for_other_models(capsys):
    parser = train_parser()
    with pytest.raises(SystemExit):
        validate(parser.parse_args(["-model", "sttran", "-num_mixtures", "4"]), parser)
    assert "only apply to -model tempura" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        validate(parser.parse_args(["-model", "tempura", "-lambda_con", "2"]), parser)
    assert "need -tracking True" in capsys.readouterr().err


def test_training_beats_random_and_memory_survives_resume(train_data, tmp_path):
    flags = ["-model", "tempura", "-num_mixtures", "2", "-mem_feat_lambda", "0.3", "-lr", "3e-3",
             "-scheduler", "cosine", "-seed", "1"]
    run(train_data, tmp_path / "run", *flags, "-epochs", "12", "-eval_freq", "12")
    common = ["-data_path", str(train_data), "-cache_dir", str(train_data / "cache"), *TINY]
    trained = test_script.main(common + ["-model_path", str(tmp_path / "run" / "checkpoint_final.tar")])
    random = test_script.main(common + ["-model", "tempura", "-num_mixtures", "2", "-random_init", "True",
                                        "-seed", "1", "-output", str(tmp_path / "rand")])
    assert trained["test/with/R@20"] > random["test/with/R@20"] + 0.2, (trained, random)
    # Resume: the memory built after epoch 1 is in checkpoint_last.tar and comes back on resume (a resumed run
    # with nothing left to train writes the restored state to checkpoint_final.tar).
    exact = [*flags[:-4], "-lr", "1e-3", "-eval_freq", "9"]
    run(train_data, tmp_path / "part", *exact, "-epochs", "1")
    saved = ckpt(tmp_path / "part" / "checkpoint_last.tar")["model"]
    assert bool(saved["memory_ready"]) and saved["memory"].abs().sum() > 0
    run(train_data, tmp_path / "part", *exact, "-epochs", "1", "-resume_from", "latest")
    restored = ckpt(tmp_path / "part" / "checkpoint_final.tar")["model"]
    assert torch.equal(restored["memory"], saved["memory"]) and bool(restored["memory_ready"])
