"""FoundationStereo's behaviour: shapes at any size, padding, the training outputs, the lookup, the frozen branch,
gradient checkpointing, CPU mixed precision, configuration errors."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from stereo.core.cost_volume import concat_volume, group_correlation_volume
from stereo.core.depth_anything import vit_input_size
from stereo.core.foundation_stereo import FoundationStereo
from stereo.core.geometry import GeoEncodingLookup
from stereo.core.model_config import check_model_config
from stereo.core.upsample import InputPadder

SMALL = {"vit_size": "vits", "max_disp": 32, "hidden_dims": [32, 32, 32], "train_iters": 2, "valid_iters": 2}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return FoundationStereo(SMALL)


def _pair(height=32, width=64, batch=1, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return tuple(255 * torch.rand(batch, 3, height, width, generator=generator) for _ in range(2))


@pytest.mark.parametrize("shape", [(37, 51), (32, 64), (1, 33), (65, 3)])
def test_padder_pads_both_sides_to_multiples_of_32_and_unpads_exactly(shape):
    image = torch.randn(2, 3, *shape)
    padder = InputPadder(image.shape, 32)
    (padded,) = padder.pad_images(image)
    assert padded.shape[-2] % 32 == 0 and padded.shape[-1] % 32 == 0
    left, right, top, bottom = padder.pad
    assert 0 <= right - left <= 1 and 0 <= bottom - top <= 1  # as the reference demo ('sintel' mode)
    assert torch.equal(padder.unpad(padded), image)


def test_vit_input_is_rounded_up_to_112_and_capped_at_1344():
    assert vit_input_size(64, 96) == (112, 112)
    assert vit_input_size(375, 1242) == (448, 1344)  # KITTI: width capped, height scaled and rounded up
    assert vit_input_size(2000, 1000) == (1344, 672)


def test_test_mode_returns_the_disparity_at_the_input_size(model):
    model.eval()
    with torch.no_grad():
        disparity = model(*_pair(37, 53), iters=2, test_mode=True)
    assert disparity.shape == (1, 1, 37, 53) and torch.isfinite(disparity).all()


def test_training_forward_returns_what_the_sequence_loss_needs(model):
    model.train()
    out = model(*_pair(batch=2))
    assert len(out["disparities"]) == SMALL["train_iters"]
    assert all(d.shape == (2, 1, 32, 64) for d in out["disparities"])
    assert out["disparity"] is out["disparities"][-1]
    quarter = out["init_disparity_quarter"].detach()
    assert quarter.shape == (2, 1, 8, 16) and out["init_disparity"].shape == (2, 1, 32, 64)
    expected = 4 * F.interpolate(quarter, scale_factor=4, mode="bilinear", align_corners=True)
    assert torch.allclose(out["init_disparity"], expected)
    assert 0 <= float(quarter.min()) and float(quarter.max()) <= SMALL["max_disp"] // 4 - 1  # soft-argmin bins
    model.zero_grad(set_to_none=True)


def test_eval_training_outputs_and_test_mode_agree(model):
    model.eval()
    left, right = _pair(seed=3)
    with torch.no_grad():
        out = model(left, right, iters=2)
        last = model(left, right, iters=2, test_mode=True)
    assert torch.equal(out["disparity"], last)


def test_frozen_depth_anything_gets_no_gradient_and_stays_in_eval_mode(model):
    model.train()
    assert not model.feature.dino.training
    assert not any(p.requires_grad for p in model.feature.dino.parameters())
    out = model(*_pair())
    (out["disparity"].mean() + out["init_disparity"].mean()).backward()
    assert all(p.grad is None for p in model.feature.dino.parameters())
    assert model.feature.stem[0].weight.grad is not None  # the EdgeNeXt side trains
    model.zero_grad(set_to_none=True)


@pytest.mark.slow
def test_gradient_checkpointing_gives_the_same_loss_and_gradients():
    torch.manual_seed(0)
    model = FoundationStereo(SMALL).train()
    model.apply(lambda m: m.eval() if isinstance(m, (torch.nn.Dropout, torch.nn.modules.batchnorm._BatchNorm)) else None)
    left, right = _pair()
    grads = []
    for checkpointed in (False, True):
        model.gradient_checkpointing = checkpointed
        model.zero_grad(set_to_none=True)
        out = model(left, right)
        loss = sum(d.mean() for d in out["disparities"]) + out["init_disparity"].mean()
        loss.backward()
        grads.append((float(loss.detach()), model.update_block.gru04.conv1[0].weight.grad.clone()))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-6)
    assert torch.allclose(grads[0][1], grads[1][1], rtol=1e-4, atol=1e-7)


def test_cpu_bf16_autocast_runs_the_3d_filtering_in_fp32_with_finite_gradients(model):
    model.train()
    dtypes = {}
    hook = model.cost_agg.register_forward_hook(lambda module, args, out: dtypes.update(cost_agg=out.dtype))
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(*_pair())
        (out["disparity"].float().mean() + out["init_disparity"].float().mean()).backward()
    finally:
        hook.remove()
    assert dtypes["cost_agg"] == torch.float32
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    model.zero_grad(set_to_none=True)


def test_volumes_match_a_brute_force_loop():
    left, right = torch.randn(2, 16, 4, 10), torch.randn(2, 16, 4, 10)
    gwc, concat = group_correlation_volume(left, right, 6, 4), concat_volume(left, right, 6)
    assert gwc.shape == (2, 4, 6, 4, 10) and concat.shape == (2, 32, 6, 4, 10)
    for d in range(6):
        for x in range(10):
            a = F.normalize(left[..., x].reshape(2, 4, 4, 4), dim=2)
            if x >= d:
                b = F.normalize(right[..., x - d].reshape(2, 4, 4, 4), dim=2)
                assert torch.allclose(gwc[:, :, d, :, x], (a * b).sum(2), atol=1e-6)
                assert torch.equal(concat[:, 16:, d, :, x], right[..., x - d])
            else:
                assert torch.all(gwc[:, :, d, :, x] == 0) and torch.all(concat[:, 16:, d, :, x] == 0)
            assert torch.equal(concat[:, :16, d, :, x], left[..., x])  # the left half is never masked


def test_alt_lookup_gives_the_reg_numbers():
    generator = torch.Generator().manual_seed(0)
    left, right = torch.randn(2, 24, 4, 16, generator=generator), torch.randn(2, 24, 4, 16, generator=generator)
    volume = torch.randn(2, 5, 8, 4, 16, generator=generator)
    disp = 12 * torch.rand(2, 1, 4, 16, generator=generator) - 2  # also taps outside the row
    reg = GeoEncodingLookup(left, right, volume, levels=2, radius=4, implementation="reg")(disp)
    alt = GeoEncodingLookup(left, right, volume, levels=2, radius=4, implementation="alt")(disp)
    assert reg.shape == (2, 2 * (5 + 1) * 9, 4, 16)
    assert torch.allclose(reg, alt, atol=1e-5)


def test_lookup_samples_the_volume_at_the_disparity():
    volume = torch.arange(8.0).view(1, 1, 8, 1, 1).expand(1, 1, 8, 1, 3).contiguous()  # value = disparity bin
    features = torch.randn(1, 4, 1, 3)
    lookup = GeoEncodingLookup(features, features, volume, levels=1, radius=1)
    taps = lookup(torch.full((1, 1, 1, 3), 2.5))[:, :3]
    assert torch.allclose(taps, torch.tensor([1.5, 2.5, 3.5]).view(1, 3, 1, 1).expand(1, 3, 1, 3))


@pytest.mark.parametrize("override, key", [
    ({"max_disp": 48}, "model.max_disp"), ({"hidden_dims": [128, 64, 64]}, "model.hidden_dims"),
    ({"n_gru_layers": 1}, "model.n_gru_layers"), ({"feature_type": "cnn"}, "model.feature_type"),
    ({"n_downsample": 3}, "model.n_downsample"), ({"vit_size": "vitg"}, "model.vit_size"),
    ({"correlation_implementation": "fast"}, "model.correlation_implementation"),
    ({"attend_over": "width"}, "model.attend_over"), ({"vit_weights": 3}, "model.vit_weights"),
])
def test_bad_values_are_errors_naming_the_key(override, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        check_model_config(override)


def test_unknown_keys_are_errors_naming_them():
    with pytest.raises(ValueError, match="feature_channels"):
        FoundationStereo({"feature_channels": [8, 8]})


def test_two_gru_levels_build_and_run():
    model = FoundationStereo({**SMALL, "n_gru_layers": 2}).eval()
    assert not hasattr(model.update_block, "gru16")
    with torch.no_grad():
        assert model(*_pair(), iters=1, test_mode=True).shape == (1, 1, 32, 64)
