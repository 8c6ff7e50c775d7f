"""Rectified flow: x_t = t * ε + (1 - t) * x0, the model predicts the velocity ε - x0; sampling integrates from
pure noise at t = 1 down to t = 0 (one step by default: x0 = ε - f(ε, 1))."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common import dist


ONE_STEP_FRACTION = 0.5


def sample_timesteps(batch: int, device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B,) timesteps: with probability ONE_STEP_FRACTION exactly t = 1, otherwise t ~ U(0, 1).

    The paper does not give its distribution. One-step inference evaluates f only at t = 1, so half of the samples
    train that case directly; the uniform half keeps the whole path for multi-step Euler sampling. (On the tiny
    CPU litmus set this reached the mean-shadow baseline's IoU in about half the iterations of plain uniform t.)"""
    t = torch.rand(batch, device=device, generator=generator)
    at_one = torch.rand(batch, device=device, generator=generator) < ONE_STEP_FRACTION
    return torch.where(at_one, torch.ones_like(t), t)


def penumbra_weights(shadow_map: torch.Tensor, strength: float, size: tuple[int, int]) -> torch.Tensor:
    """(B, 1, H, W) shadow strength -> per-pixel loss weights (B, 1, h, w): 1 + strength * 4s(1 - s), which is
    largest (1 + strength) where the shadow is half strength, i.e. in the penumbra, and 1 in the lit ground and the
    umbra; averaged down to the target's resolution (h, w) (the latent grid of the SDXL backend)."""
    weights = 1 + strength * 4 * shadow_map * (1 - shadow_map)
    return weights if weights.shape[-2:] == size else F.adaptive_avg_pool2d(weights, size)


def flow_losses(model: nn.Module, batch: dict, generator: torch.Generator | None = None,
                t: torch.Tensor | None = None, penumbra_weight: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample squared error between f(x_t, t, cond, light) and ε - x0, and the timesteps used: ((B,), (B,)).

    `t` fixes the timesteps (e.g. all ones for the one-step loss); by default they come from `sample_timesteps`.
    The model may be DDP-wrapped."""
    core = dist.unwrap(model)
    x0 = core.encode_target(batch["shadow_map"])
    cond = core.encode_condition(batch["mask"], batch["object_image"])
    noise = torch.randn(x0.shape, device=x0.device, generator=generator)
    if t is None:
        t = sample_timesteps(x0.shape[0], x0.device, generator)
    tb = t.view(-1, 1, 1, 1)
    x_t = tb * noise + (1 - tb) * x0
    velocity = model(x_t, t, cond, batch["theta"], batch["phi"], batch["size"])
    error = (velocity.float() - (noise - x0).float()).pow(2)
    if penumbra_weight:
        error = error * penumbra_weights(batch["shadow_map"].float(), penumbra_weight, error.shape[-2:])
    return error.flatten(1).mean(1), t


def training_loss(model: nn.Module, batch: dict, generator: torch.Generator | None = None) -> torch.Tensor:
    """The rectified-flow loss of one batch: the mean of `flow_losses`."""
    return flow_losses(model, batch, generator)[0].mean()


@torch.no_grad()
def sample(model: nn.Module, mask: torch.Tensor, object_image: torch.Tensor, theta: torch.Tensor,
           phi: torch.Tensor, size: torch.Tensor, steps: int = 1, generator: torch.Generator | None = None,
           shared_noise: bool = False) -> torch.Tensor:
    """Shadow strength (B, 1, H, W) in [0, 1] by Euler steps of the flow from t = 1 (noise) to t = 0.

    With `shared_noise` every sample of the batch starts from the same noise (one draw): for several lights of
    one object the predictions then differ only through the light."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    core = dist.unwrap(model)
    cond = core.encode_condition(mask, object_image)
    shape = (mask.shape[0], core.target_channels, *cond.shape[-2:])
    if shared_noise:
        x = torch.randn((1, *shape[1:]), device=mask.device, generator=generator).expand(shape)
    else:
        x = torch.randn(shape, device=mask.device, generator=generator)
    times = torch.linspace(1.0, 0.0, steps + 1, device=mask.device)
    for t_now, t_next in zip(times[:-1], times[1:]):
        velocity = model(x, t_now.expand(shape[0]), cond, theta, phi, size).float()
        x = x + (t_next - t_now) * velocity  # dt < 0: x moves from noise toward data
    return core.decode(x)
