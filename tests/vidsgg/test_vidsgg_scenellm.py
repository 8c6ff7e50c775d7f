"""SceneLLM: forward/backward per mode, what each stage trains, every SceneLLM flag changing the model or the
loss, the optimal-transport codebook update, the -llm_name path (local folder, base LM out of the state dict),
the paper-size parameter count on the meta device, and training through train.py."""
import logging

import pytest
import torch

from vidsgg import summary
from vidsgg import test as test_script
from vidsgg.models.build import build_model
from vidsgg.models.scenellm import SceneLLM
from vidsgg.models.scenellm.ot import sinkhorn
from vidsgg.models.scenellm.sia import cophenetic_distance
from vidsgg.options import train_parser
from vidsgg.option_checks import parse_train_args, validate

from tests.vidsgg.test_vidsgg_models import tiny_entry
from tests.vidsgg.test_vidsgg_train import TINY, ckpt, run

SMALL = ["-latent_dim", "16", "-codebook_size", "32"]


def scenellm(*flags, mode="predcls", stage="stage1"):
    torch.manual_seed(0)
    detections = ["-detections", "unused.pt"] if mode == "sgdet" else []
    args = parse_train_args(["-model", "scenellm", "-mode", mode, "-scenellm_stage", stage, *TINY, *SMALL,
                             *detections, *flags])
    return build_model(args, 32, 8)


def entry():
    torch.manual_seed(1)
    return tiny_entry(feature_dim=32, union_channels=8)


def lm_base(model):
    return {n: p for n, p in model.reasoner.llm.named_parameters() if "lora_" not in n}


def adapters(model):
    return {n: p for n, p in model.reasoner.llm.named_parameters() if "lora_" in n}


@pytest.mark.parametrize("mode", ["predcls", "sgcls", "sgdet"])
def test_forward_backward_in_each_mode(mode):
    model, e = scenellm(mode=mode), entry()
    out = model(e)
    assert out["attention_distribution"].shape == (8, 3) and out["spatial_distribution"].shape == (8, 6)
    assert out["contacting_distribution"].shape == (8, 17) and out["frame_tokens"].shape == (4, 16)
    assert 0 <= out["contacting_distribution"].min() and out["contacting_distribution"].max() <= 1
    assert ("obj_logits" in out) == (mode != "predcls")
    losses = model.compute_losses(out, e, bce=False)
    assert ("object" in losses) == (mode != "predcls")
    sum(losses.values()).backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert all(p.grad is not None for _, p in trainable), [n for n, p in trainable if p.grad is None]
    for part in (model.aggregator.gcn[0].weight, model.reasoner.project_in.weight, model.gate.weight):
        assert part.grad.abs().sum() > 0  # the LM's context reaches the loss
    assert all(p.grad is None for p in lm_base(model).values())


def test_stages_choose_what_trains_and_parameter_groups():
    vq = scenellm(stage="vqvae")
    assert {n.split(".")[0] for n, p in vq.named_parameters() if p.requires_grad} == {"vqvae"}
    e = entry()
    out = vq.train()(e)
    assert "attention_distribution" not in out  # a vqvae training forward stops after the VQ-VAE
    assert set(vq.compute_losses(out, e, False)) == {"reconstruction", "codebook", "commitment"}
    assert "attention_distribution" in vq.eval()(e)  # evaluation still gives scene graphs
    groups = vq.parameter_groups(1e-3)
    assert len(groups) == 1 and {id(p) for p in groups[0]["params"]} == {id(p) for p in vq.vqvae.parameters()}

    one = scenellm(stage="stage1")
    assert not any(p.requires_grad for p in one.vqvae.parameters())
    assert not any(p.requires_grad for p in one.reasoner.llm.parameters())
    assert one.pair_features.subject_fc.weight.requires_grad and one.aggregator.box_mlp[0].weight.requires_grad
    assert len(one.parameter_groups(1e-3)) == 1

    two = scenellm("-llm_lr", "3e-4", "-freeze_llm_epochs", "2", stage="stage2")
    assert all(p.requires_grad for p in adapters(two).values()) and adapters(two)
    assert not any(p.requires_grad for p in lm_base(two).values())
    main, lora = two.parameter_groups(1e-3)
    assert main["lr"] == 1e-3 and lora["lr"] == 3e-4
    assert {id(p) for p in lora["params"]} == {id(p) for p in adapters(two).values()}
    for epoch, trains in ((0, False), (1, False), (2, True), (5, True)):
        two.start_epoch(epoch)
        assert all(p.requires_grad == trains for p in adapters(two).values()), epoch
    assert scenellm(stage="stage2").parameter_groups(1.0)[1]["lr"] == 2e-5  # -llm_lr default


def test_stage2_lora_trains_only_the_adapters():
    model, e = scenellm("-lora_dropout", "0", stage="stage2"), entry()
    base = {n: p.detach().clone() for n, p in lm_base(model).items()}
    lora = {n: p.detach().clone() for n, p in adapters(model).items()}
    optimizer = torch.optim.AdamW(model.parameter_groups(1e-2))
    for _ in range(2):  # LoRA B starts at 0: A gets a gradient from the second step on
        optimizer.zero_grad()
        sum(model.compute_losses(model(e), e, False).values()).backward()
        optimizer.step()
    assert all(torch.equal(p, base[n]) for n, p in lm_base(model).items())
    assert all(not torch.equal(p, lora[n]) for n, p in adapters(model).items())


def test_lora_flags_shape_the_adapters():
    model = scenellm("-lora_r", "3", "-lora_alpha", "12", "-lora_dropout", "0.3")
    q = model.reasoner.llm.model.layers[0].self_attn.q_proj
    assert q.lora_A["default"].out_features == 3 and q.scaling["default"] == 4.0
    assert q.lora_dropout["default"].p == 0.3
    default = scenellm().reasoner.llm.model.layers[0].self_attn.q_proj
    assert default.lora_A["default"].out_features == 16 and default.scaling["default"] == 2.0


def test_vq_flags_and_loss_weights():
    model = scenellm("-latent_dim", "24", "-codebook_size", "40")
    assert model.vqvae.codebook.shape == (40, 24) and model.reasoner.llm.config.hidden_size == 24
    e = entry()

    def losses(*flags, mode="predcls", stage="stage1"):
        m = scenellm(*flags, mode=mode, stage=stage).eval()
        return m.compute_losses(m(e), e, False)

    vq = losses(stage="vqvae")
    assert torch.isclose(losses("-commitment_cost", "1.0", stage="vqvae")["commitment"], 4 * vq["commitment"])
    base = losses(mode="sgcls")
    scaled = losses("-alpha_obj", "3", "-alpha_rel", "0.5", mode="sgcls")
    assert torch.isclose(scaled["object"], 3 * base["object"])
    for name in ("attention", "spatial", "contacting"):
        assert torch.isclose(scaled[name], 0.5 * base[name])


def test_sinkhorn_marginals_and_clustering():
    torch.manual_seed(0)
    cost = torch.rand(5, 7)
    a, b = torch.full((5,), 0.2), torch.softmax(torch.randn(7), 0)
    plan = sinkhorn(cost, a, b, epsilon=0.05, iterations=300)
    torch.testing.assert_close(plan.sum(1), a, atol=1e-4, rtol=0)
    torch.testing.assert_close(plan.sum(0), b, atol=1e-4, rtol=0)
    # Points on a line at 0, 1, 3, 7: single-linkage merge heights 1 (0-1), 2 (then 3), 4 (then 7).
    x = torch.tensor([0.0, 1.0, 3.0, 7.0])
    merged = cophenetic_distance((x[:, None] - x[None]).abs()[None])[0]
    assert merged[0, 1] == 1 and merged[0, 2] == 2 and merged[1, 2] == 2 and merged[0, 3] == 4 and merged[2, 3] == 4


def test_ot_step_updates_the_codebook_every_n_training_forwards():
    e = entry()
    model = scenellm("-ot_step", "2").train()
    start = model.vqvae.codebook.detach().clone()
    model(e)
    assert torch.equal(model.vqvae.codebook, start) and int(model.ot.forwards) == 1
    model(e)
    moved = model.vqvae.codebook.detach().clone()
    assert not torch.equal(moved, start)
    # Moved toward the data: the codes are now closer to the latents they quantize.
    latents = model.vqvae.encoder(e["features"]).detach()
    assert torch.cdist(latents, moved).min(1).values.mean() < torch.cdist(latents, start).min(1).values.mean()
    model.eval()(e)
    assert int(model.ot.forwards) == 2  # evaluation does not count
    state = model.state_dict()
    assert int(state["ot.forwards"]) == 2 and state["ot.memory"].abs().sum() > 0
    slower = scenellm("-ot_step", "3").train()
    slower(e), slower(e)
    assert torch.equal(slower.vqvae.codebook, start)
    # In the vqvae stage the codebook also trains by gradient: backward still works after an update in forward.
    vq = scenellm("-ot_step", "1", stage="vqvae").train()
    sum(vq.compute_losses(vq(e), e, False).values()).backward()
    assert vq.vqvae.codebook.grad is not None


def test_default_lm_is_saved_in_full_and_logged(caplog):
    with caplog.at_level(logging.INFO):
        model = scenellm()
    assert "no -llm_name given; using a small randomly initialised causal LM" in caplog.text
    state = model.state_dict()
    assert "reasoner.llm.model.layers.0.self_attn.q_proj.base_layer.weight" in state
    rebuilt = SceneLLM.from_config(model.config_dict())
    rebuilt.load_state_dict(state)
    e = entry()
    torch.testing.assert_close(rebuilt.eval()(e)["spatial_distribution"], model.eval()(e)["spatial_distribution"])


def test_llm_name_loads_a_local_folder_and_leaves_the_base_out_of_checkpoints(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(5)
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=16, hidden_size=12, intermediate_size=20, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=2))
    lm.save_pretrained(tmp_path / "lm")
    model = scenellm("-llm_name", str(tmp_path / "lm"), stage="stage2")
    assert model.reasoner.llm.config.hidden_size == 12 and model.reasoner.project_in.out_features == 12
    saved_q = lm.model.layers[0].self_attn.q_proj.weight
    assert torch.equal(model.reasoner.llm.model.layers[0].self_attn.q_proj.base_layer.weight, saved_q)
    state = model.state_dict()
    assert not [k for k in state if k.startswith("reasoner.llm.") and "lora_" not in k]
    assert [k for k in state if "lora_A" in k] and "reasoner.project_in.weight" in state
    with torch.no_grad():
        adapters(model)["model.layers.0.self_attn.v_proj.lora_B.default.weight"].fill_(0.3)
    rebuilt = SceneLLM.from_config(model.config_dict())
    rebuilt.load_state_dict(model.state_dict())  # strict: the base LM comes from the folder, not the dict
    e = entry()
    torch.testing.assert_close(rebuilt.eval()(e)["spatial_distribution"], model.eval()(e)["spatial_distribution"])
    with pytest.raises(FileNotFoundError, match="no_such_lm"):
        scenellm("-llm_name", str(tmp_path / "no_such_lm"))
    # On the meta device (summary.py) only the folder's config is read: the same LM, no weights.
    with torch.device("meta"):
        meta_model = scenellm("-llm_name", str(tmp_path / "lm"))
    assert all(p.is_meta for p in meta_model.parameters())
    assert sum(p.numel() for p in lm_base(meta_model).values()) == sum(p.numel() for p in lm.parameters())
    assert summary.main(["-model", "scenellm", "-llm_name", str(tmp_path / "lm")]) < summary.main(["-model", "scenellm"])


def test_paper_size_parameter_count_on_meta(capsys):
    total = summary.main(["-model", "scenellm", "-mode", "predcls"])
    sttran = summary.main(["-model", "sttran", "-mode", "predcls"])
    d, latent, c4, k, r = 1936, 512, 2048, 512, 16
    vqvae = (c4 * latent + latent) + (latent * latent + latent) + k * latent + (latent * latent + latent) \
        + (latent * c4 + c4)
    sia = (9 * latent + latent) + 3 * (latent * latent + latent) + 2 * latent
    layer = 4 * latent * latent + 3 * latent * 4 * latent + 2 * latent + 2 * 2 * r * latent  # + LoRA on q, v
    lm = 32 * latent + 4 * layer + latent + 2 * (latent * latent + latent)  # tied embeddings; project in/out
    gru = 2 * 3 * (latent * latent + latent)
    fusion = (latent * d + d) + (2 * d * d + d)
    assert total == sttran + vqvae + sia + lm + gru + fusion
    assert "total_params: " in capsys.readouterr().out


def test_flags_refused_outside_scenellm_or_their_stage(capsys):
    parser = train_parser()
    for argv, message in ((["-model", "sttran", "-codebook_size", "8"], "only apply to -model scenellm"),
                          (["-model", "scenellm", "-scenellm_stage", "stage1", "-llm_lr", "1e-4"], "stage2 only"),
                          (["-model", "scenellm", "-scenellm_stage", "vqvae", "-epochs", "3"], "-vqvae_epochs")):
        with pytest.raises(SystemExit):
            validate(parser.parse_args(argv), parser)
        assert message in capsys.readouterr().err
    assert parse_train_args(["-model", "scenellm", "-scenellm_stage", "vqvae", "-vqvae_epochs", "2"]).epochs == 2
    assert parse_train_args(["-model", "scenellm", "-scenellm_stage", "stage1",
                             "-stage1_iterations", "7"]).max_steps == 7
    with pytest.raises(ValueError, match="-lora_dropout"):
        scenellm("-lora_dropout", "1.5")


RUN = ["-model", "scenellm", *SMALL, "-eval_freq", "99", "-max_eval_videos", "2", "-warmup_steps", "0",
       "-scheduler", "plateau"]  # a constant lr: the stage-2 groups keep -lr and -llm_lr


def test_stage_chain_vqvae_stage1_stage2_through_train(train_data, tmp_path):
    vq_run = run(train_data, tmp_path / "vq", *RUN, "-scenellm_stage", "vqvae", "-vqvae_epochs", "2", "-lr", "3e-3",
                 "-ot_step", "4")
    assert vq_run["epoch"] == 2
    vq = ckpt(tmp_path / "vq" / "checkpoint_final.tar")
    assert vq["config"]["scenellm_stage"] == "vqvae" and int(vq["model"]["ot.forwards"]) == vq_run["step"]
    stage1 = [*RUN, "-scenellm_stage", "stage1", "-lr", "3e-3", "-ot_step", "3"]
    s1_run = run(train_data, tmp_path / "s1", *stage1, "-epochs", "2", "-stage1_iterations", "9",
                 "-resume_from", str(tmp_path / "vq" / "checkpoint_final.tar"))
    assert s1_run["step"] == 9  # the iteration cap ends the stage inside epoch 1
    s1 = ckpt(tmp_path / "s1" / "checkpoint_final.tar")
    assert "Progressive training" in (tmp_path / "s1" / "logfile.txt").read_text()
    frozen = ["vqvae.encoder.0.weight", "vqvae.decoder.2.weight",
              "reasoner.llm.model.layers.0.self_attn.q_proj.base_layer.weight"]
    assert all(torch.equal(s1["model"][k], vq["model"][k]) for k in frozen)  # the stage-1 VQ-VAE and LM stay
    assert not torch.equal(s1["model"]["attention_head.weight"], vq["model"]["attention_head.weight"])
    # Stage 2 from stage 1: only the adapters of the LM move (and only after -freeze_llm_epochs).
    s1_ckpt = str(tmp_path / "s1" / "checkpoint_final.tar")
    lora_b = "reasoner.llm.model.layers.0.self_attn.v_proj.lora_B.default.weight"
    for name, freeze, moves in (("s2", "0", True), ("s2_frozen", "1", False)):
        run(train_data, tmp_path / name, *RUN, "-scenellm_stage", "stage2", "-lr", "1e-3", "-llm_lr", "1e-2",
            "-epochs", "1", "-stage2_iterations", "4", "-freeze_llm_epochs", freeze, "-resume_from", s1_ckpt)
        s2 = ckpt(tmp_path / name / "checkpoint_final.tar")
        assert s2["step"] == 4 and s2["optimizer"]["param_groups"][1]["lr"] == 1e-2
        assert torch.equal(s2["model"][frozen[2]], s1["model"][frozen[2]])
        assert (not torch.equal(s2["model"][lora_b], s1["model"][lora_b])) == moves, name


def test_predcls_training_beats_random_weights_and_resume_is_exact(train_data, tmp_path):
    # Plateau scheduler: the learning rate does not depend on the planned length, so 1 + resumed 2 = 3 epochs.
    flags = ["-model", "scenellm", *SMALL, "-scenellm_stage", "stage1", "-lr", "3e-3", "-scheduler", "plateau",
             "-eval_freq", "3", "-seed", "1", "-ot_step", "5", "-deterministic", "True"]
    metrics = run(train_data, tmp_path / "full", *flags, "-epochs", "3")
    common = ["-data_path", str(train_data), "-cache_dir", str(train_data / "cache"), *TINY]
    random = test_script.main(common + [*flags[:6], "-random_init", "True", "-seed", "1",
                                        "-output", str(tmp_path / "rand")])
    assert metrics["val/with/R@20"] > random["test/with/R@20"] + 0.2, (metrics, random)
    run(train_data, tmp_path / "part", *flags, "-epochs", "1", "-max_eval_videos", "1")
    run(train_data, tmp_path / "part", *flags, "-epochs", "3", "-resume_from", "latest")
    full, resumed = (ckpt(tmp_path / n / "checkpoint_final.tar")["model"] for n in ("full", "part"))
    for key, value in full.items():  # the OT memory, counter and codebook included
        assert torch.equal(value, resumed[key]), key
    assert int(full["ot.forwards"]) > 5 and "Resumed from" in (tmp_path / "part" / "logfile.txt").read_text()
