"""Optimal-transport codebook update: the codebook entries are moved toward the data they are transported to.

A ring memory collects the VQ-VAE encoder outputs of the objects of every frame seen in training forwards
(latents pooled across frames and videos). Every `ot_step` training forwards, an entropic OT plan P (K, M)
between the K codebook entries (uniform mass 1/K) and the M memory latents (uniform mass 1/M) is computed with
log-domain Sinkhorn on the squared-distance cost, and each entry moves halfway to its barycentric target
    e_k ← (1 − rate)·e_k + rate·(Σ_j P_kj z_j / Σ_j P_kj),   rate = 0.5.
The balanced plan gives every code a share of the data, which revives dead codes and spreads the codebook over
the latent distribution. The memory, its fill count and the forward counter are buffers, so a resumed run
updates at the same steps with the same memory. Under DDP the buffers are broadcast from rank 0 at every
forward (so the memory is mostly rank 0's latents) and the new codebook is averaged over the ranks, which
keeps one codebook everywhere.
"""
from __future__ import annotations

import torch
from torch import nn

from common import dist

UPDATE_RATE = 0.5


def sinkhorn(cost: torch.Tensor, source_mass: torch.Tensor, target_mass: torch.Tensor, epsilon: float = 0.05,
             iterations: int = 100) -> torch.Tensor:
    """Entropic OT plan (K, M) for cost (K, M) ≥ 0 with row sums `source_mass` (K,) and column sums
    `target_mass` (M,) (each summing to 1). Log-domain iterations; the cost is scaled to max 1 first, so
    `epsilon` is relative to the largest cost."""
    scaled = cost / cost.max().clamp_min(1e-12)
    log_kernel = -scaled / epsilon
    log_a, log_b = source_mass.log(), target_mass.log()
    f = torch.zeros_like(log_a)
    g = torch.zeros_like(log_b)
    for _ in range(iterations):
        f = log_a - torch.logsumexp(log_kernel + g[None, :], dim=1)
        g = log_b - torch.logsumexp(log_kernel + f[:, None], dim=0)
    return torch.exp(log_kernel + f[:, None] + g[None, :])


class OTCodebookUpdate(nn.Module):
    """Ring memory of latents + the update every `ot_step` training forwards. step(codebook, latents) -> bool
    (whether the codebook was updated in this call); latents (N, D) are detached."""

    def __init__(self, codebook_size: int, latent_dim: int, ot_step: int):
        super().__init__()
        self.ot_step = ot_step
        self.register_buffer("memory", torch.zeros(codebook_size, latent_dim))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))
        self.register_buffer("write_at", torch.zeros((), dtype=torch.long))
        self.register_buffer("forwards", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def remember(self, latents: torch.Tensor) -> None:
        size = len(self.memory)
        latents = latents.detach()[-size:].to(self.memory.dtype)
        slots = (self.write_at + torch.arange(len(latents), device=self.memory.device)) % size
        self.memory[slots] = latents
        self.write_at.copy_((self.write_at + len(latents)) % size)
        self.filled.copy_(torch.clamp(self.filled + len(latents), max=size))

    @torch.no_grad()
    def step(self, codebook: torch.Tensor, latents: torch.Tensor) -> bool:
        self.remember(latents)
        self.forwards += 1
        if int(self.forwards) % self.ot_step or int(self.filled) == 0:
            return False
        data = self.memory[: int(self.filled)]
        codes = codebook.detach().float()
        cost = torch.cdist(codes, data.float()).pow(2)
        plan = sinkhorn(cost, torch.full((len(codes),), 1.0 / len(codes), device=codes.device),
                        torch.full((len(data),), 1.0 / len(data), device=codes.device))
        target = (plan @ data.float()) / plan.sum(1, keepdim=True).clamp_min(1e-12)
        updated = (1 - UPDATE_RATE) * codes + UPDATE_RATE * target
        if dist.is_initialized():
            updated = dist.all_reduce_mean(updated)
        codebook.data.copy_(updated.to(codebook.dtype))
        return True
