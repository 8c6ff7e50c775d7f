import pytest
import torch

from vae_latent.vae_config import load_config
from vae_latent.vanilla_vae_model import (VanillaVAE, build_model, kl_per_dim, to_model_range, to_unit_range,
                                          vae_loss)


def test_spec_config_has_63m_parameters_on_meta_device():
    with torch.device("meta"):
        model = build_model(load_config()["model_params"])
    total = sum(p.numel() for p in model.parameters())
    assert total == 62_980_803
    assert model.bottom_shape == (1024, 8, 8)
    linear = sum(p.numel() for name in ("fc_mu", "fc_var", "decoder_input")
                 for p in getattr(model, name).parameters())
    assert 50.3e6 < linear < 50.5e6  # the three Linear layers hold ~80 % of the weights (spec A1)


def test_spec_stage_shapes_on_meta_device():
    with torch.device("meta"):
        model = VanillaVAE()
        x = torch.empty(2, 3, 256, 256)
        shapes = []
        for stage in model.encoder:
            x = stage(x)
            shapes.append(tuple(x.shape[1:]))
        assert shapes == [(64, 128, 128), (128, 64, 64), (256, 32, 32), (512, 16, 16), (1024, 8, 8)]
        y = model.decoder(model.decoder_input(torch.empty(2, 256)).view(-1, *model.bottom_shape))
        assert tuple(y.shape[1:]) == (64, 128, 128)
        assert tuple(model.final_layer[0](y).shape[1:]) == (64, 256, 256)
        assert tuple(model.final_layer(y).shape) == (2, 3, 256, 256)


@pytest.mark.parametrize("image_size,hidden_dims,bottom", [(32, [8, 16], 8), (64, [4, 8, 16], 8), (96, [8, 8, 8], 12)])
def test_other_sizes_derive_every_shape(image_size, hidden_dims, bottom):
    model = VanillaVAE(latent_dim=5, hidden_dims=hidden_dims, image_size=image_size)
    out = model(torch.rand(2, 3, image_size, image_size) * 2 - 1)
    assert out["recons"].shape == (2, 3, image_size, image_size)
    assert out["mu"].shape == out["log_var"].shape == (2, 5)
    assert model.bottom_shape == (hidden_dims[-1], bottom, bottom)
    assert model.sample(3, "cpu").shape == (3, 3, image_size, image_size)


def test_hidden_dims_list_is_not_reversed_in_place():
    dims = [8, 16, 32]
    VanillaVAE(hidden_dims=dims, image_size=32)
    assert dims == [8, 16, 32]


def test_image_size_must_divide_by_the_downsampling():
    with pytest.raises(ValueError, match="divisible"):
        VanillaVAE(hidden_dims=[8, 16, 32], image_size=36)


def test_outputs_live_in_minus_one_one_and_range_helpers_round_trip():
    model = VanillaVAE(latent_dim=4, hidden_dims=[8], image_size=8)
    with torch.no_grad():
        for p in model.final_layer[1].parameters():
            p.fill_(5.0)  # saturate the Tanh: outputs must still stay inside [-1, 1]
        out = model(torch.rand(2, 3, 8, 8) * 2 - 1)["recons"]
    assert out.min() >= -1 and out.max() <= 1 and out.max() > 0.99
    images01 = torch.tensor([0.0, 0.25, 1.0])
    assert torch.equal(to_model_range(images01), torch.tensor([-1.0, -0.5, 1.0]))
    assert torch.allclose(to_unit_range(to_model_range(images01)), images01)
    assert torch.equal(to_unit_range(torch.tensor([-3.0, 3.0])), torch.tensor([0.0, 1.0]))


def test_kld_matches_hand_computation_and_is_positive():
    mu = torch.tensor([[1.0, 0.0], [0.5, -2.0]])
    log_var = torch.tensor([[0.0, 1.0], [-1.0, 0.5]])
    # per element: 0.5 * (mu^2 + sigma^2 - 1 - log sigma^2)
    hand = [[0.5 * (1 + 1 - 1 - 0), 0.5 * (0 + 2.718281828 - 1 - 1)],
            [0.5 * (0.25 + 0.367879441 - 1 + 1), 0.5 * (4 + 1.648721271 - 1 - 0.5)]]
    assert torch.allclose(kl_per_dim(mu, log_var), torch.tensor(hand), atol=1e-6)
    recons, images = torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 0.5)
    losses = vae_loss(recons, images, mu, log_var, kld_weight=0.1)
    per_sample = [sum(row) for row in hand]
    kld = sum(per_sample) / 2  # batch mean of the per-sample sum
    assert losses["kld"].item() == pytest.approx(kld, rel=1e-6) and losses["kld"] > 0
    assert losses["recon"].item() == pytest.approx(0.25)
    assert losses["loss"].item() == pytest.approx(0.25 + 0.1 * kld, rel=1e-6)
    assert torch.allclose(losses["kld_per_dim"], torch.tensor(hand).mean(0))


def test_kld_is_zero_for_the_prior():
    losses = vae_loss(torch.zeros(3, 3, 2, 2), torch.zeros(3, 3, 2, 2), torch.zeros(3, 6), torch.zeros(3, 6), 1.0)
    assert losses["kld"].item() == 0.0 and losses["loss"].item() == 0.0


def test_eval_without_sampling_is_deterministic():
    model = VanillaVAE(latent_dim=4, hidden_dims=[8, 16], image_size=16).eval()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.equal(model(x, sample=False)["recons"], model(x, sample=False)["recons"])


def test_unknown_model_name_is_refused():
    with pytest.raises(ValueError, match="BetaVAE"):
        build_model({"name": "BetaVAE", "in_channels": 3, "latent_dim": 4, "hidden_dims": [8], "image_size": 8})
