"""Sinusoidal light embedding, the pixel UNet's interface, the rectified-flow one-step and Euler samplers,
metrics, and the meta-device parameter count."""
import math

import pytest
import torch

from shadow.flow import sample, training_loss
from shadow.metrics import rmse, scale_invariant_rmse, shadow_metrics, soft_iou, zncc
from shadow.models import build_model
from shadow.models.embedding import light_vector, sinusoidal_embedding
from shadow.summary import main as summary_main


def test_sinusoidal_embedding_is_cos_then_sin_with_geometric_frequencies():
    values = torch.tensor([0.0, 30.0, 359.0])
    emb = sinusoidal_embedding(values, 256)
    assert emb.shape == (3, 256)
    i = torch.arange(128)
    freqs = 10000.0 ** (-i / 128)
    assert torch.allclose(emb[1, :128], torch.cos(30.0 * freqs), atol=1e-5)
    assert torch.allclose(emb[1, 128:], torch.sin(30.0 * freqs), atol=1e-5)
    assert torch.equal(emb[0], torch.cat([torch.ones(128), torch.zeros(128)]))
    assert emb[1, 0].item() == pytest.approx(math.cos(30.0), abs=1e-5)  # raw degrees, not normalised


def test_sinusoidal_embedding_matches_diffusers_timesteps():
    from diffusers.models.embeddings import Timesteps
    values = torch.tensor([2.0, 8.0, 45.0, 180.0])
    reference = Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0)(values)
    assert torch.allclose(sinusoidal_embedding(values, 256), reference, atol=1e-5)


def test_light_vector_concatenates_theta_phi_size():
    vec = light_vector(torch.tensor([30.0]), torch.tensor([90.0]), torch.tensor([4.0]))
    assert vec.shape == (1, 768)
    assert torch.allclose(vec[0, 256:512], sinusoidal_embedding(torch.tensor([90.0]))[0])


def test_unet_shapes_and_light_dependence():
    torch.manual_seed(0)
    model = build_model("unet", 32)
    x = torch.randn(2, 1, 32, 32)
    cond = model.encode_condition(torch.ones(2, 1, 32, 32), torch.zeros(2, 3, 32, 32))
    assert cond.shape == (2, 4, 32, 32)
    t, theta, size = torch.tensor([1.0, 0.5]), torch.tensor([30.0, 30.0]), torch.tensor([2.0, 2.0])
    # The zero-initialised output conv makes the untrained velocity exactly the output skip t * x_t.
    assert torch.allclose(model(x, t, cond, theta, torch.zeros(2), size), t.view(-1, 1, 1, 1) * x)
    with torch.no_grad():  # move off the zero initialisation of the residual branches, as training would
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    a = model(x, t, cond, theta, torch.zeros(2), size)
    b = model(x, t, cond, theta, torch.full((2,), 180.0), size)
    assert a.shape == (2, 1, 32, 32) and not torch.allclose(a, b)


# The seeded test-size UNet's velocity at two rows of its output (fp32 CPU). They change when any layer of the
# forward changes: the embedding, a block, a skip, the condition encoder or the output skip.
GOLDEN_ROW_0 = [-0.503301, 0.929035, -0.664007, -0.88114, -0.4847, 0.906735]
GOLDEN_ROW_16 = [0.878036, 0.089867, 1.898876, -0.874936, 0.70916, -0.064709]


def test_seeded_unet_reproduces_its_golden_velocity():
    torch.manual_seed(0)
    model = build_model("unet", 32).eval()
    assert sum(p.numel() for p in model.parameters()) == 231457
    with torch.no_grad():  # off the zero initialisation, so that every residual branch contributes
        weights = torch.Generator().manual_seed(1)
        for param in model.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=weights))
        inputs = torch.Generator().manual_seed(2)
        x_t = torch.randn(1, 1, 32, 32, generator=inputs)
        mask = (torch.rand(1, 1, 32, 32, generator=inputs) > 0.5).float()
        object_image = torch.rand(1, 3, 32, 32, generator=inputs)
        cond = model.encode_condition(mask, object_image)
        velocity = model(x_t, torch.tensor([0.7]), cond, torch.tensor([30.0]), torch.tensor([120.0]),
                         torch.tensor([4.0]))
    close = dict(atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(velocity[0, 0, 0, :6], torch.tensor(GOLDEN_ROW_0), **close)
    torch.testing.assert_close(velocity[0, 0, 16, 10:16], torch.tensor(GOLDEN_ROW_16), **close)


class ExactVelocity(torch.nn.Module):
    """A stand-in denoiser that knows x0: its velocity (x_t - x0) / t is exact for a point-mass data set."""

    target_channels = 1

    def __init__(self, x0):
        super().__init__()
        self.x0 = x0

    def encode_condition(self, mask, object_image):
        return torch.cat([mask, object_image], 1)

    def decode(self, x):
        return ((x + 1) / 2).clamp(0, 1)

    def forward(self, x_t, t, cond, theta, phi, size):
        return (x_t - self.x0) / t.view(-1, 1, 1, 1)


@pytest.mark.parametrize("steps", [1, 4])
def test_sampler_from_noise_at_t1_recovers_x0(steps):
    shadow = torch.rand(2, 1, 8, 8)
    model = ExactVelocity(shadow * 2 - 1)
    zeros = torch.zeros(2)
    out = sample(model, torch.ones(2, 1, 8, 8), torch.zeros(2, 3, 8, 8), zeros, zeros, zeros + 2, steps=steps,
                 generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, shadow, atol=1e-5)


def test_one_step_sample_is_noise_minus_velocity_at_t1():
    calls = []

    class Recorder(ExactVelocity):
        def forward(self, x_t, t, cond, theta, phi, size):
            calls.append((x_t.clone(), t.clone()))
            return torch.full_like(x_t, 0.25)

    model = Recorder(None)
    zeros = torch.zeros(1)
    out = sample(model, torch.ones(1, 1, 4, 4), torch.zeros(1, 3, 4, 4), zeros, zeros, zeros + 2,
                 generator=torch.Generator().manual_seed(3))
    noise, t = calls[0]
    assert len(calls) == 1 and torch.equal(t, torch.ones(1))
    assert torch.equal(noise, torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(3)))
    assert torch.allclose(out, ((noise - 0.25 + 1) / 2).clamp(0, 1))


def test_training_loss_targets_noise_minus_data():
    shadow = torch.rand(3, 1, 8, 8)
    batch = {"shadow_map": shadow, "mask": torch.ones(3, 1, 8, 8), "object_image": torch.zeros(3, 3, 8, 8),
             "theta": torch.zeros(3), "phi": torch.zeros(3), "size": torch.full((3,), 2.0)}
    exact = ExactVelocity(shadow * 2 - 1)
    exact.encode_target = lambda s: s * 2 - 1
    assert training_loss(exact, batch, torch.Generator().manual_seed(0)).item() < 1e-8


def test_metrics_on_known_maps():
    g = torch.zeros(1, 1, 2, 2)
    g[..., 0, :] = 1.0
    p = g * 0.5
    assert soft_iou(p, g).item() == pytest.approx(0.5)
    assert rmse(p, g).item() == pytest.approx(math.sqrt(0.125))
    assert scale_invariant_rmse(p, g).item() == pytest.approx(0.0, abs=1e-6)  # a scaled copy is perfect
    assert zncc(p, g).item() == pytest.approx(1.0, abs=1e-6)
    assert zncc(1 - g, g).item() == pytest.approx(-1.0, abs=1e-6)
    assert set(shadow_metrics(p, g)) == {"iou", "rmse", "srmse", "zncc"}
    assert soft_iou(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)).item() == 1.0


def test_summary_counts_the_paper_size_unet_on_meta(capsys):
    total = summary_main(["--backbone", "unet", "--image_size", "512"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"total_params: {total}"
    assert 60_000_000 < total < 90_000_000
    assert summary_main(["--backbone", "unet", "--image_size", "32"]) == sum(
        p.numel() for p in build_model("unet", 32).parameters())
