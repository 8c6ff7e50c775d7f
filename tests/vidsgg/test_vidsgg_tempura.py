"""TEMPURA: forward/backward per mode, the reference's formulas (memory mixing and weights, loss weights,
consistency losses, tracking), every flag changing the model or the loss, test-time λ, inapplicable flags
refused, learning beats random weights, and the memory surviving a resume. Equality with unbiasedSGG's code at
paper size: test_vidsgg_reference.py."""
import pytest
import torch

from vidsgg import test as test_script
from vidsgg.models.build import build_model
from vidsgg.models.tempura_parts import euclidean_contrastive_loss, supervised_contrastive_loss
from vidsgg.options import train_parser
from vidsgg.option_checks import validate

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


def with_memory(model, e):
    acc = model.memory_accumulators()
    model.accumulate_memory(model(e), e, acc)
    model.set_memory(acc)
    return acc


@pytest.mark.parametrize("mode", ["predcls", "sgcls", "sgdet"])
def test_forward_backward_and_uncertainties(mode):
    obj_flags = ["-tracking", "True", "-obj_con_loss", "euc_con"] if mode != "predcls" else []
    model = tempura(*obj_flags, mode=mode)
    e = entry()
    out = model(e)
    assert out["attention_distribution"].shape == (8, 3) and out["contacting_distribution"].shape == (8, 17)
    torch.testing.assert_close(out["attention_distribution"].exp().sum(1), torch.ones(8))  # log-probabilities
    for name in ("attention", "spatial", "contacting"):
        assert (out[f"{name}_aleatoric"] >= 0).all() and (out[f"{name}_epistemic"] >= 0).all()
    losses = model.compute_losses(out, e, bce=False)
    assert ("object" in losses) == ("consistency" in losses) == (mode != "predcls")
    sum(losses.values()).backward()
    assert model.gmm["spatial"].mean.weight.grad.abs().sum() > 0
    if mode != "predcls":
        assert model.tracker.encoder.layers[0].self_attn.in_proj_weight.grad.abs().sum() > 0
    model.eval()
    assert torch.equal(model(e)["spatial_distribution"], model(e)["spatial_distribution"])  # test: the means


def test_mixture_selection_and_tracking_flags_shape_the_model():
    assert tempura("-num_mixtures", "3").gmm["contacting"].mean.out_features == 17 * 3
    assert tempura().rel_memory.selector is None
    assert tempura("-mem_feat_selection", "automated").rel_memory.selector is not None
    assert tempura("-rel_mem_compute", "none").rel_memory is None and not tempura("-rel_mem_compute", "none").has_memory
    tracked = tempura("-tracking", "True", mode="sgcls").tracker
    assert len(tracked.encoder.layers) == 3 and tracked.encoder.layers[0].linear1.out_features == 1024
    assert tracked.encoder.layers[0].self_attn.embed_dim == 32 + 8 + 128  # RoI | class embedding | box MLP
    memory = tempura().rel_memory.attention  # value and output projections, no biases (reference)
    assert memory.in_proj_bias is None and memory.out_proj.weight.shape == (64, 64)


def test_memory_mixing_is_lambda_times_feature():
    """e·x + (1−e)·mem with e = λ: λ = 1 leaves the features alone (as the reference's test.py, which never loads
    the memory), smaller λ mixes the memory in; test.py's -mem_feat_lambda reaches the forward."""
    e = entry()
    plain = tempura().eval()(e)["spatial_distribution"]
    model = tempura("-mem_feat_lambda", "1.0").eval()
    with_memory(model, e)
    torch.testing.assert_close(model(e)["spatial_distribution"], plain)
    model.set_test_flags(mem_feat_lambda=0.3)
    mixed = model(e)
    assert not torch.allclose(mixed["spatial_distribution"], plain)
    x = mixed["memory_source"]  # late fusion: the decoder output before the memory
    memory = model.rel_memory
    torch.testing.assert_close(memory(x, 0.3), 0.3 * x + 0.7 * memory.attend(x))


def test_memory_sources_and_separate_attention():
    e = entry()
    late, early = tempura().eval(), tempura("-mem_fusion", "early").eval()
    spatial = late.transformer.spatial_encode(late.pair_features(e, e["labels"]), e["im_idx"])
    torch.testing.assert_close(early(e)["memory_source"], spatial)  # early: the spatial encoder's output
    torch.testing.assert_close(late(e)["memory_source"], late.transformer.temporal_decode(spatial, e["im_idx"]))
    separate = tempura("-rel_mem_compute", "seperate", "-mem_fusion", "early").eval()
    with_memory(separate, e)
    memory, x = separate.rel_memory, torch.randn(5, 64)
    parts = [memory.attention[g](x[None], memory.prototypes(g)[None], memory.prototypes(g)[None])[0][0]
             for g in ("attention", "spatial", "contacting")]
    torch.testing.assert_close(memory.attend(x), torch.stack(parts).mean(0))  # one feature for all heads


def test_prototypes_are_uncertainty_weighted_means():
    """simple: the mean of the class's embeddings; al: weights exp(aleatoric of that class), normalised over the
    class's samples (lib/Memory.py); a tiny -uncertainty_threshold leaves every pair out."""
    e = entry()
    for kind in ("simple", "al"):
        model = tempura("-rel_mem_weight_type", kind).eval()
        out = model(e)
        with_memory(model, e)
        labels, source = e["contacting_gt"], out["memory_source"]
        w = labels * (out["contacting_aleatoric"].exp() if kind == "al" else 1)
        seen = labels.sum(0) > 0
        expected = (w.T @ source)[seen] / w.sum(0)[seen, None]
        torch.testing.assert_close(model.rel_memory.prototypes("contacting")[seen], expected)
    strict = tempura("-uncertainty_threshold", "1e-6").eval()
    acc = strict.memory_accumulators()
    strict.accumulate_memory(strict(e), e, acc)
    assert all(float(totals.sum()) == 0 for _, totals in acc.values())


def test_loss_weighting_and_loss_flags():
    e = entry()
    model = tempura().eval()
    out = model(e)
    base = model.compute_losses(out, e, bce=False)
    bce = torch.nn.functional.binary_cross_entropy(out["spatial_distribution"], e["spatial_gt"])
    torch.testing.assert_close(base["spatial"], bce)  # TEMPURA's default: BCE (-mlm: margin)
    model.config.rel_loss_weighting = "al"
    weighted = model.compute_losses(out, e, bce=False)["spatial"]
    per_pair = torch.nn.functional.binary_cross_entropy(out["spatial_distribution"], e["spatial_gt"],
                                                        reduction="none")
    w = 1 + torch.softmax(out["spatial_aleatoric"].sum(1), 0)
    torch.testing.assert_close(weighted, (per_pair * w[:, None]).mean())
    mlm = tempura("-mlm").eval()
    assert not torch.isclose(mlm.compute_losses(mlm(e), e, bce=False)["spatial"], base["spatial"])
    regularised = tempura("-gmm_regularization", "0.5").eval()
    assert regularised.compute_losses(regularised(e), e, bce=False)["gmm_regularization"] > 0

    def consistency(*flags):
        m = tempura(*flags, mode="sgcls").eval()
        return m.compute_losses(m(e), e, bce=False)["consistency"]

    euc = consistency("-obj_con_loss", "euc_con")
    assert torch.isclose(consistency("-obj_con_loss", "euc_con", "-lambda_con", "2"), 2 * euc)
    assert not torch.isclose(consistency("-obj_con_loss", "info_nce"), euc)


def test_contrastive_losses_by_hand():
    z = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])  # unit vectors
    labels = torch.tensor([1, 1, 2])
    d01, d02, d12 = 0.6325, 1.4142, 0.8944  # |z_i − z_j|
    # positives: d01 (twice); negatives: max(0, 1 − d) over (0,2), (1,2) both ways: only 1 − d12 is non-zero.
    torch.testing.assert_close(euclidean_contrastive_loss(z, labels), torch.tensor(d01 + (1 - d12)), atol=1e-4,
                               rtol=0)
    logits = z @ z.T / 0.1
    log_prob = logits - torch.log((logits.exp() * (1 - torch.eye(3))).sum(1, keepdim=True))
    expected = -(log_prob[0, 1] / 2 + log_prob[1, 0] / 2 + 0) / 3  # anchor 2 has no positive: 0, still counted
    torch.testing.assert_close(supervised_contrastive_loss(z, labels), expected)


def test_tracking_groups_by_detector_class_and_window():
    tracker = tempura("-tracking", "True", mode="sgcls").eval().tracker
    torch.manual_seed(0)
    x, frames = torch.randn(6, 168), torch.tensor([0, 0, 1, 1, 2, 4])
    groups = torch.tensor([5, 7, 5, 7, 5, 5])
    out = tracker(x, frames, groups)
    changed = x.clone()
    changed[1] += 3.0  # group 7: group 5's boxes must not change
    out2 = tracker(changed, frames, groups)
    assert torch.allclose(out[[0, 2, 4, 5]], out2[[0, 2, 4, 5]]) and not torch.allclose(out[3], out2[3])
    tracker.window = 2  # box 5 (frame 4) now sees only itself (|4 − 2| ≥ 2); box 2 (frame 1) still sees box 0
    far = x.clone()
    far[0] += 3.0
    assert torch.allclose(tracker(x, frames, groups)[5], tracker(far, frames, groups)[5])
    assert not torch.allclose(tracker(x, frames, groups)[2], tracker(far, frames, groups)[2])


def test_object_gmm_head_memory_and_loss_weighting():
    e = entry()
    gmm = tempura("-obj_head", "gmm", "-num_mixtures", "3", mode="sgcls")
    assert gmm.object_classifier.classify.mean.out_features == 37 * 3
    out = gmm(e)
    assert (out["obj_aleatoric"] >= 0).all() and (out["obj_epistemic"] >= 0).all()
    torch.testing.assert_close(out["obj_logits"].exp().sum(1), torch.ones(len(e["labels"])))
    plain = gmm.compute_losses(out, e, bce=False)["object"]
    gmm.config.obj_loss_weighting = "al"
    weighted = gmm.compute_losses(out, e, bce=False)["object"]
    per_object = torch.nn.functional.nll_loss(out["obj_logits"], e["labels"], reduction="none")
    w = 1 + torch.softmax(out["obj_aleatoric"].sum(1).detach(), 0)
    torch.testing.assert_close(weighted, (per_object * w).mean())
    assert not torch.isclose(weighted, plain)
    gmm.eval()
    assert gmm.object_logits(e)["obj_distribution"].shape == (len(e["labels"]), 36)  # no background at test
    memory = tempura("-obj_mem_compute", mode="sgcls").eval()
    before = memory(e)["obj_logits"]
    acc = with_memory(memory, e)
    seen = acc["objects"][1] > 0  # prototypes of classes 1..36
    assert bool(memory.obj_memory.ready) and seen.sum() == len(e["labels"].unique())
    assert seen[e["labels"].unique() - 1].all()
    assert not torch.allclose(memory(e)["obj_logits"], before)


def test_memory_attention_trains_once_prototypes_exist():
    """Unused before the first memory pass, so frozen until then (DDP needs a gradient for every trained
    parameter); the optimizer groups hold them from the start."""
    e = entry()
    model = tempura("-obj_mem_compute", mode="sgcls")
    projections = [model.rel_memory.attention.in_proj_weight, model.obj_memory.attention.out_proj.weight]
    assert not any(p.requires_grad for p in projections)
    assert sum(len(g["params"]) for g in model.parameter_groups(1e-3)) == len(list(model.parameters()))
    with_memory(model, e)
    model.start_epoch(1)
    assert all(p.requires_grad for p in projections)
    sum(model.compute_losses(model(e), e, bce=False).values()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in projections)


def test_inapplicable_tempura_combinations(capsys):
    parser = train_parser()
    for flags, message in ((["-obj_loss_weighting", "al", "-mode", "sgcls"], "needs -obj_head gmm"),
                           (["-obj_head", "gmm"], "apply to sgcls and sgdet"),
                           (["-tracking", "True"], "apply to sgcls and sgdet"),
                           (["-rel_head", "linear", "-rel_loss_weighting", "ep"], "need the GMM relation heads"),
                           (["-rel_head", "linear", "-num_mixtures", "3"], "need the GMM relation heads"),
                           (["-temporal_window", "3", "-mode", "sgcls"], "need -tracking True")):
        with pytest.raises(SystemExit):
            validate(parser.parse_args(["-model", "tempura", *flags]), parser)
        assert message in capsys.readouterr().err
    args = validate(parser.parse_args(["-model", "tempura", "-rel_head", "linear", "-obj_head", "gmm", "-K", "3",
                                       "-mode", "sgcls"]), parser)
    assert args.num_mixtures == 3  # K still shapes the object head
    # The reference allows the seperate memory with early fusion.
    validate(parser.parse_args(["-model", "tempura", "-rel_mem_compute", "seperate", "-mem_fusion", "early"]), parser)


def test_flags_refused_for_other_models(capsys):
    parser = train_parser()
    with pytest.raises(SystemExit):
        validate(parser.parse_args(["-model", "sttran", "-num_mixtures", "4"]), parser)
    assert "only apply to -model tempura" in capsys.readouterr().err


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
    key = "rel_memory.contacting_prototypes"
    assert bool(saved["rel_memory.ready"]) and saved[key].abs().sum() > 0
    run(train_data, tmp_path / "part", *exact, "-epochs", "1", "-resume_from", "latest")
    restored = ckpt(tmp_path / "part" / "checkpoint_final.tar")["model"]
    assert torch.equal(restored[key], saved[key]) and bool(restored["rel_memory.ready"])
