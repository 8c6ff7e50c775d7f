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
    assert tempura().rel_memory.selector is None
    assert tempura("-mem_feat_selection", "automated").rel_memory.selector is not None
    assert tempura().tracker is None and tempura("-tracking", "True").tracker is not None


def test_memory_lambda_fusion_and_weighting():
    e = entry()
    outputs = {}
    for lam in ("0.0", "0.9"):
        model = tempura("-mem_feat_lambda", lam).eval()
        acc = model.memory_accumulators()
        model.accumulate_memory(model(e), e, acc)
        sums, weights = acc["predicates"]
        model.set_memory(acc)
        memory = model.rel_memory
        assert bool(memory.ready) and torch.allclose(memory.memory[weights > 0], (sums / weights[:, None])[weights > 0])
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
    for name, model in (("simple", simple), ("al", al)):
        acc = model.memory_accumulators()
        model.accumulate_memory(model(e), e, acc)
        weights[name] = acc["predicates"][1]
    assert (weights["al"] <= weights["simple"]).all() and weights["al"].sum() < weights["simple"].sum()
    strict = tempura("-uncertainty_threshold", "1e-6").eval()
    acc = strict.memory_accumulators()
    strict.accumulate_memory(strict(e), e, acc)
    assert acc["predicates"][1].sum() == 0


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


def test_heads_and_memory_layout_flags():
    e = entry()
    linear = tempura("-rel_head", "linear")
    assert linear.gmm is None and linear.spatial_head.out_features == 6
    out = linear(e)
    assert out["spatial_distribution"].shape == (8, 6) and "spatial_aleatoric" not in out
    assert set(linear.compute_losses(out, e, bce=False)) == {"attention", "spatial", "contacting"}
    separate = tempura("-rel_mem_compute", "seperate").eval()
    assert {k: m.memory.shape[0] for k, m in separate.rel_memory.items()} == {"attention": 3, "spatial": 6,
                                                                              "contacting": 17}
    acc = separate.memory_accumulators()
    separate.accumulate_memory(separate(e), e, acc)
    separate.set_memory(acc)
    assert all(bool(m.ready) for m in separate.rel_memory.values())
    base = separate(e)
    separate.rel_memory["contacting"].lam = 0.0  # only the contacting head stops seeing its memory
    changed = separate(e)
    torch.testing.assert_close(changed["spatial_distribution"], base["spatial_distribution"])
    assert not torch.allclose(changed["contacting_distribution"], base["contacting_distribution"])


def test_object_head_memory_and_loss_weighting():
    e = entry()
    gmm = tempura("-obj_head", "gmm", "-num_mixtures", "3", mode="sgcls")
    assert gmm.obj_gmm.mean.out_features == 37 * 3 and len(gmm.object_classifier.classify) == 2
    out = gmm(e)
    assert (out["obj_aleatoric"] >= 0).all() and (out["obj_epistemic"] >= 0).all()
    torch.testing.assert_close(out["obj_logits"].exp().sum(1), torch.ones(len(e["labels"])))
    gmm.eval()
    with torch.no_grad():  # spread logits and variances so objects differ in loss and uncertainty
        gmm.obj_gmm.variance.weight.normal_(0, 1.0)
        gmm.obj_gmm.mean.weight.normal_(0, 1.0)
        out = gmm(e)
        plain = gmm.compute_losses(out, e, bce=False)["object"]
        gmm.config.obj_loss_weighting = "al"
        weighted = gmm.compute_losses(out, e, bce=False)["object"]
    objects = ~e["is_person"]
    per_object = torch.nn.functional.cross_entropy(out["obj_logits"][objects], e["labels"][objects], reduction="none")
    w = 1 / (1 + out["obj_aleatoric"][objects].mean(1))
    torch.testing.assert_close(weighted, (per_object * w / w.mean()).mean())
    assert abs(float(weighted - plain)) > 1e-3
    assert tempura(mode="sgcls").obj_gmm is None and tempura(mode="sgcls").obj_memory is None
    memory = tempura("-obj_mem_compute", mode="sgcls").eval()
    before = memory(e)["obj_logits"]
    acc = memory.memory_accumulators()
    memory.accumulate_memory(memory(e), e, acc)
    memory.set_memory(acc)
    seen = acc["objects"][1] > 0
    assert bool(memory.obj_memory.ready) and seen[e["labels"].unique()].all() and seen.sum() == len(e["labels"].unique())
    assert not torch.allclose(memory(e)["obj_logits"], before)


def test_memory_projections_train_once_prototypes_exist():
    """Unused before the first memory pass, so frozen until then (DDP needs a gradient for every trained
    parameter); the optimizer groups hold them from the start."""
    e = entry()
    model = tempura("-obj_mem_compute", mode="sgcls")
    projections = [model.rel_memory.query.weight, model.obj_memory.key.weight]
    assert not any(p.requires_grad for p in projections)
    assert sum(len(g["params"]) for g in model.parameter_groups(1e-3)) == len(list(model.parameters()))
    acc = model.memory_accumulators()
    model.accumulate_memory(model(e), e, acc)
    model.set_memory(acc)
    model.start_epoch(1)
    assert all(p.requires_grad for p in projections)
    sum(model.compute_losses(model(e), e, bce=False).values()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in projections)


def test_inapplicable_tempura_combinations(capsys):
    parser = train_parser()
    for flags, message in ((["-obj_loss_weighting", "al", "-mode", "sgcls"], "needs -obj_head gmm"),
                           (["-obj_head", "gmm"], "apply to sgcls and sgdet"),
                           (["-rel_head", "linear", "-rel_loss_weighting", "ep"], "need the GMM relation heads"),
                           (["-rel_head", "linear", "-num_mixtures", "3"], "need the GMM relation heads"),
                           (["-rel_mem_compute", "seperate", "-mem_fusion", "early"], "needs -mem_fusion late")):
        with pytest.raises(SystemExit):
            validate(parser.parse_args(["-model", "tempura", *flags]), parser)
        assert message in capsys.readouterr().err
    args = validate(parser.parse_args(["-model", "tempura", "-rel_head", "linear", "-obj_head", "gmm", "-K", "3",
                                       "-mode", "sgcls"]), parser)
    assert args.num_mixtures == 3  # K still shapes the object head


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
    assert bool(saved["rel_memory.ready"]) and saved["rel_memory.memory"].abs().sum() > 0
    run(train_data, tmp_path / "part", *exact, "-epochs", "1", "-resume_from", "latest")
    restored = ckpt(tmp_path / "part" / "checkpoint_final.tar")["model"]
    assert torch.equal(restored["rel_memory.memory"], saved["rel_memory.memory"]) and bool(restored["rel_memory.ready"])
