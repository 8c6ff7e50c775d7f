import logging

import pytest
import torch
import torch.nn.functional as F

from common.ema import make_ema
from stereo.core.corr import CorrelationLookup
from stereo.core.cost_volume import concat_volume, group_correlation
from stereo.core.model import StereoModel
from stereo.core.upsample import InputPadder
from stereo.core.vit import DinoV2

TINY = dict(max_disp=32, hidden_dims=[16, 16, 16], train_iters=3, valid_iters=3, feature_channels=[8, 8, 16, 16, 16],
            feature_dim=16, cv_groups=4, concat_dim=4, volume_dim=4, geo_dim=4, disp_kernel=5, motion_dim=16)


def _pair(height=32, width=64, batch=1, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, height, width, generator=generator), torch.rand(batch, 3, height, width, generator=generator)


@pytest.mark.parametrize("shape", [(37, 51), (32, 64), (1, 33), (65, 3)])
def test_padder_pads_to_multiples_of_32_and_unpads_exactly(shape):
    image = torch.randn(2, 3, *shape)
    padder = InputPadder(image.shape, 32)
    (padded,) = padder.pad_images(image)
    assert padded.shape[-2] % 32 == 0 and padded.shape[-1] % 32 == 0
    assert padded.shape[-2] - shape[0] < 32 and padded.shape[-1] - shape[1] < 32
    assert torch.equal(padder.unpad(padded), image)


def test_model_output_keeps_an_odd_input_size():
    torch.manual_seed(0)
    model = StereoModel(**TINY).eval()
    left, right = _pair(37, 53)
    with torch.no_grad():
        out = model(left, right)
    assert out["disparity"].shape == (1, 1, 37, 53) and out["init_disparity"].shape == (1, 1, 37, 53)
    assert "disparities" not in out


def test_training_forward_returns_every_iteration():
    torch.manual_seed(0)
    model = StereoModel(**TINY).train()
    out = model(*_pair(batch=2))
    assert len(out["disparities"]) == TINY["train_iters"]
    assert all(d.shape == (2, 1, 32, 64) for d in out["disparities"])
    assert out["disparity"] is out["disparities"][-1]


def test_max_disp_must_be_a_multiple_of_32():
    with pytest.raises(ValueError, match="multiple of 32"):
        StereoModel(**{**TINY, "max_disp": 48})
    with pytest.raises(ValueError, match="correlation_implementation"):
        StereoModel(**{**TINY, "correlation_implementation": "fast"})


def test_cost_volumes_match_a_brute_force_loop():
    left, right = torch.randn(2, 16, 4, 10), torch.randn(2, 16, 4, 10)
    gwc, concat = group_correlation(left, right, 8, 4), concat_volume(left, right, 8)
    ln, rn = F.normalize(left, dim=1), F.normalize(right, dim=1)
    for d in (0, 3, 7):
        for x in range(10):
            expect = (ln[..., x] * rn[..., x - d]).view(2, 4, 4, 4).mean(2) if x >= d else torch.zeros(2, 4, 4)
            assert torch.allclose(gwc[:, :, d, :, x], expect, atol=1e-6)
            assert torch.equal(concat[:, 16:, d, :, x], right[..., x - d] if x >= d else torch.zeros(2, 16, 4))


def test_reg_and_alt_lookups_agree():
    torch.manual_seed(0)
    geometry = torch.randn(2, 3, 8, 4, 16)
    left, right = torch.randn(2, 8, 4, 16), torch.randn(2, 8, 4, 16)
    disp = torch.rand(2, 1, 4, 16) * 9
    reg = CorrelationLookup(geometry, left, right, levels=3, radius=2, implementation="reg")(disp)
    alt = CorrelationLookup(geometry, left, right, levels=3, radius=2, implementation="alt")(disp)
    assert reg.shape == (2, 3 * 4 * 5, 4, 16)
    assert torch.allclose(reg, alt, atol=1e-5)
    # Spot check: integer disparity, level 0, centre tap = cosine(left(x), right(x - d)).
    disp = torch.full((2, 1, 4, 16), 3.0)
    feats = CorrelationLookup(geometry, left, right, levels=1, radius=0, implementation="alt")(disp)
    expect = (F.normalize(left, dim=1)[..., 5] * F.normalize(right, dim=1)[..., 2]).sum(1)
    assert torch.allclose(feats[:, 3, :, 5], expect, atol=1e-6)
    assert torch.allclose(feats[:, 0, :, 5], geometry[:, 0, 3, :, 5], atol=1e-6)


def test_reg_and_alt_models_give_the_same_disparity():
    torch.manual_seed(0)
    reg = StereoModel(**TINY).eval()
    alt = StereoModel(**{**TINY, "correlation_implementation": "alt"}).eval()
    alt.load_state_dict(reg.state_dict())
    left, right = _pair(seed=1)
    with torch.no_grad():
        assert torch.allclose(reg(left, right)["disparity"], alt(left, right)["disparity"], atol=1e-4)


def test_gradient_checkpointing_gives_the_same_outputs_and_gradients():
    torch.manual_seed(0)
    model = StereoModel(**TINY).train()
    left, right = _pair(batch=2, seed=2)
    results = []
    for checkpointing in (False, True):
        model.gradient_checkpointing = checkpointing
        model.zero_grad()
        out = model(left, right)
        sum(d.square().mean() for d in out["disparities"]).backward()
        results.append(([d.detach() for d in out["disparities"]],
                        {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (outs_plain, grads_plain), (outs_ckpt, grads_ckpt) = results
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(outs_plain, outs_ckpt))
    assert grads_plain.keys() == grads_ckpt.keys()
    for name in grads_plain:
        assert torch.allclose(grads_plain[name], grads_ckpt[name], rtol=1e-4, atol=1e-6), name


def test_ema_updates_batchnorm_buffers():
    torch.manual_seed(0)
    model = StereoModel(**TINY).train()
    ema = make_ema(model, decay=0.5)
    bn_name = "features.stem.0.1.running_mean"
    before = dict(ema.module.named_buffers())[bn_name].clone()
    model(*_pair(batch=2))
    ema.update_parameters(model)  # first update copies
    model(*_pair(batch=2, seed=5))
    ema.update_parameters(model)
    after = dict(ema.module.named_buffers())[bn_name]
    assert not torch.allclose(after, before)
    assert torch.allclose(after, dict(model.named_buffers())[bn_name], atol=1.0)


def test_dinov2_branch_loads_local_weights_and_stays_frozen(tmp_path, caplog):
    torch.manual_seed(0)
    reference = DinoV2("vits")
    torch.save({"model": {f"pretrained.{k}": v for k, v in reference.state_dict().items()}}, tmp_path / "vits.pth")
    model = StereoModel(**{**TINY, "feature_type": "dinov2", "vit_size": "vits",
                           "vit_weights": str(tmp_path / "vits.pth"), "vit_dim": 8})
    assert torch.equal(model.vit.vit.blocks[3].attn.qkv.weight, reference.blocks[3].attn.qkv.weight)
    assert not any(p.requires_grad for p in model.vit.vit.parameters())
    assert model.vit.project.weight.requires_grad
    model.train()
    assert not model.vit.vit.training
    out = model(*_pair(32, 64))
    assert out["disparity"].shape == (1, 1, 32, 64)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        StereoModel(**{**TINY, "feature_type": "dinov2", "vit_size": "vits", "vit_weights": str(tmp_path / "missing.pth")})
    with caplog.at_level(logging.WARNING, logger="stereo.core.vit"):
        StereoModel(**{**TINY, "feature_type": "dinov2", "vit_size": "vits"})
    assert "randomly initialised" in caplog.text
