from pathlib import Path

import pytest
import torch

from vae_latent.vae_config import load_config
from vae_latent.vanilla_vae_model import (VanillaVAE, build_model, kl_per_dim, to_model_range, to_unit_range,
                                          vae_loss)

ROOT = Path(__file__).resolve().parents[2]


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


# A seeded tiny VAE (torch.manual_seed(0) before construction) on a fixed input, with the sampling noise drawn after
# torch.manual_seed(2): mu, log_var of image 0, and the first row (4 pixels, 3 channels) of both reconstructions.
# Recorded with torch 2.14.1 on CPU; any change to a layer, the init, the [-1, 1] convention or the sampling shows.
GOLDEN_MU = [-0.10227087885141373, -0.007500320672988892, -0.022622602060437202, 0.06718426942825317]
GOLDEN_LOG_VAR = [0.08034419268369675, 0.04201618209481239, 0.021089110523462296, 0.008303754031658173]
GOLDEN_SAMPLED_ROW = [-0.015070001594722271, -0.016357282176613808, -0.0359688475728035, -0.01865488290786743,
                      -0.05163184553384781, -0.08065511286258698, -0.08109346032142639, -0.08307233452796936,
                      0.10622689872980118, 0.1103057786822319, 0.10585938394069672, 0.11825605481863022]
GOLDEN_MEAN_ROW = [-0.012259970419108868, -0.021953647956252098, -0.03175875544548035, -0.025520261377096176,
                   -0.05971666797995567, -0.08071121573448181, -0.07910800725221634, -0.08231738954782486,
                   0.11218547821044922, 0.1173887699842453, 0.11633169651031494, 0.11924029886722565]


def test_seeded_tiny_model_reproduces_its_golden_outputs():
    torch.manual_seed(0)
    model = VanillaVAE(in_channels=3, latent_dim=4, hidden_dims=[8, 16], image_size=16).eval()
    assert sum(p.numel() for p in model.parameters()) == 6771
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        torch.manual_seed(2)
        sampled = model(images, sample=True)
        mean = model(images, sample=False)
    close = dict(atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(sampled["mu"][0], torch.tensor(GOLDEN_MU), **close)
    torch.testing.assert_close(sampled["log_var"][0], torch.tensor(GOLDEN_LOG_VAR), **close)
    torch.testing.assert_close(sampled["recons"][0, :, 0, :4].flatten(), torch.tensor(GOLDEN_SAMPLED_ROW), **close)
    torch.testing.assert_close(mean["recons"][0, :, 0, :4].flatten(), torch.tensor(GOLDEN_MEAN_ROW), **close)


def test_reparameterised_samples_have_the_posterior_mean_and_std():
    # log_var = log 4 per dimension: sigma = exp(0.5 * log_var) = 2 (exp(log_var) would give 4).
    mu = torch.tensor([[1.0, -3.0, 0.0]]).expand(200_000, 3)
    log_var = torch.log(torch.tensor([[4.0, 0.25, 1.0]])).expand(200_000, 3)
    torch.manual_seed(0)
    z = VanillaVAE.reparameterize(mu, log_var)
    torch.testing.assert_close(z.mean(0), torch.tensor([1.0, -3.0, 0.0]), atol=0.02, rtol=0)
    torch.testing.assert_close(z.std(0), torch.tensor([2.0, 0.5, 1.0]), atol=0.01, rtol=0)


def test_sampling_draws_noise_and_the_mean_path_does_not():
    torch.manual_seed(0)
    model = VanillaVAE(in_channels=3, latent_dim=4, hidden_dims=[8, 16], image_size=16).eval()
    images = torch.zeros(1, 3, 16, 16)
    with torch.no_grad():
        first, second = model(images)["recons"], model(images)["recons"]
        assert not torch.equal(first, second)  # a new eps every call
        torch.testing.assert_close(model(images, sample=False)["recons"], model(images, sample=False)["recons"])


def test_parameter_matched_config_has_laqs_parameter_count():
    from laq.models import build_model as build_laq
    import yaml

    laq_params = yaml.safe_load((ROOT / "laq/config/model/laq_lapa.yaml").read_text())
    laq_params["image_size"] = 256  # ${data.image_size} in LAQ's Hydra config
    matched = load_config(ROOT / "vae_latent/config_vae_laq_params.yaml")
    with torch.device("meta"):
        laq_total = sum(p.numel() for p in build_laq(laq_params).parameters())
        vae = build_model(matched["model_params"])
    vae_total = sum(p.numel() for p in vae.parameters())
    assert laq_total == 343_796_080 and vae_total == 343_739_883
    assert abs(vae_total / laq_total - 1) < 1e-3
    # Only the latent grows: the convolutions are the guide's, and the PCA baseline keeps the same latent size.
    assert matched["model_params"]["hidden_dims"] == load_config()["model_params"]["hidden_dims"]
    assert matched["data_params"]["baseline_fit_frames"] > matched["model_params"]["latent_dim"]
