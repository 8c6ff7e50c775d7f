"""SDXL surgery on a tiny randomly initialised SDXL-shaped config: no cross-attention, a 9-channel conv_in whose
new channels start at zero, the light through the added-time path (output changes with φ once trained), the
frozen fp32 VAE, and clear errors for a missing or incomplete local folder."""
import pytest
import torch

from shadow.flow import training_loss
from shadow.models import build_model
from shadow.models.sdxl import (TINY_UNET_CONFIG, TINY_VAE_CONFIG, PretrainedFolderError, SDXLShadowBackend,
                                build_from_configs)


def tiny_pair():
    from diffusers import AutoencoderKL, UNet2DConditionModel
    torch.manual_seed(0)
    return UNet2DConditionModel.from_config(TINY_UNET_CONFIG), AutoencoderKL.from_config(TINY_VAE_CONFIG)


def light(batch, phi):
    return torch.full((batch,), 30.0), torch.full((batch,), float(phi)), torch.full((batch,), 2.0)


def test_surgery_removes_cross_attention_and_widens_conv_in_with_zeros():
    unet, vae = tiny_pair()
    old_weight = unet.conv_in.weight.detach().clone()
    assert any(getattr(m, "attn2", None) is not None for m in unet.modules())
    model = SDXLShadowBackend(unet, vae)
    blocks = [m for m in model.unet.modules() if hasattr(m, "attn2")]
    assert blocks and all(m.attn2 is None and m.norm2 is None for m in blocks)
    assert model.unet.conv_in.in_channels == 9 and model.unet.config.in_channels == 9
    assert torch.equal(model.unet.conv_in.weight[:, :4], old_weight)
    assert model.unet.conv_in.weight[:, 4:].abs().max() == 0  # the 5 extra input channels start at zero
    assert all(not p.requires_grad for p in model.vae.parameters())
    assert all(p.dtype == torch.float32 for p in model.vae.parameters())


def test_extra_channels_do_not_change_the_output_at_initialisation():
    model = SDXLShadowBackend(*tiny_pair()).eval()
    x, t = torch.randn(1, 4, 8, 8), torch.ones(1)
    a = model(x, t, torch.zeros(1, 5, 8, 8), *light(1, 0))
    b = model(x, t, torch.randn(1, 5, 8, 8), *light(1, 0))
    assert torch.allclose(a, b)


def test_output_changes_with_phi_after_training_the_light_path():
    torch.manual_seed(1)
    model = SDXLShadowBackend(*tiny_pair())
    x, t, cond = torch.randn(1, 4, 8, 8), torch.full((1,), 0.7), torch.randn(1, 5, 8, 8)
    assert torch.allclose(model(x, t, cond, *light(1, 0)), model(x, t, cond, *light(1, 180)))  # zero-init MLP end
    batch = {"shadow_map": torch.rand(2, 1, 16, 16), "mask": torch.ones(2, 1, 16, 16),
             "object_image": torch.rand(2, 3, 16, 16) * 2 - 1, "theta": torch.tensor([30.0, 10.0]),
             "phi": torch.tensor([0.0, 200.0]), "size": torch.tensor([2.0, 8.0])}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    loss = training_loss(model, batch)
    loss.backward()
    assert model.unet.add_embedding.linear_2.weight.grad.abs().sum() > 0
    assert model.vae.encoder.conv_in.weight.grad is None  # frozen
    optimizer.step()
    with torch.no_grad():
        assert not torch.allclose(model(x, t, cond, *light(1, 0)), model(x, t, cond, *light(1, 180)))


def test_loads_from_a_local_folder_and_reports_missing_parts(tmp_path):
    unet, vae = tiny_pair()
    unet.save_pretrained(tmp_path / "sdxl" / "unet")
    vae.save_pretrained(tmp_path / "sdxl" / "vae")
    model = build_model("sdxl", 16, str(tmp_path / "sdxl"))
    assert model.unet.conv_in.in_channels == 9
    with pytest.raises(PretrainedFolderError, match="not found.*nothing"):
        build_model("sdxl", 16, str(tmp_path / "nothing"))
    with pytest.raises(PretrainedFolderError, match="--pretrained_path"):
        build_model("sdxl", 16, None)
    (tmp_path / "sdxl" / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(PretrainedFolderError, match=r"incomplete: no weights in .*vae"):
        build_model("sdxl", 16, str(tmp_path / "sdxl"))


def test_latent_round_trip_shapes():
    model = build_from_configs(TINY_UNET_CONFIG, TINY_VAE_CONFIG)
    target = model.encode_target(torch.rand(2, 1, 16, 16))
    cond = model.encode_condition(torch.ones(2, 1, 16, 16), torch.zeros(2, 3, 16, 16))
    assert target.shape == (2, 4, 8, 8) and cond.shape == (2, 5, 8, 8)
    decoded = model.decode(target)
    assert decoded.shape == (2, 1, 16, 16) and 0 <= decoded.min() and decoded.max() <= 1
