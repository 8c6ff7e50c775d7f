"""NSVQ: noise-substitution vector quantisation of the change between two frames (LAPA's quantiser, fixed).

In training the quantiser outputs `input + |input - code| * r/|r|` with r ~ N(0, I): the codebook gets its
gradient through the residual norm, so there is no commitment or codebook loss. In eval mode the hard code is used.

Fixes against the reference (spec §1 pitfalls):
- dead codes are re-seeded from live codes plus *real* noise (the reference adds 1e-12*N(0,1), a no-op in fp32,
  so copies tie and the higher index stays dead);
- the replacement schedule is configurable (default: the reference's 26 events up to step 4,500);
- hit counts are a buffer (saved, moved with `.to()`), counted per hit (the reference's `used[idx] += 1` counts
  each code once per batch), summed over DDP ranks every training step, and the replaced codebook is broadcast
  from rank 0, so all ranks keep identical codebooks;
- no hard-coded device;
- the dead-code threshold can be relative to usage (`threshold_mode="share"`: a code is dead when its share of the
  hits since the last event is below threshold / codebook_size), so a rarely used code is re-seeded even when the
  absolute count of a long window clears LAPA's per-batch bar;
- action token i is project_out(code i). With `lapa_compat=True` the (B*L, q) codes are reshaped to (B, q, L) and
  transposed, as LAPA's `NSVQ.decode` does, so each token mixes components of all L codes (needed for its weights).
"""
from __future__ import annotations

import torch
import torch.distributed as torch_dist
import torch.nn.functional as F
from torch import nn

from common import dist

# code_seq_len -> (grid side the CNN expects, CNN layers as (kernel, stride, padding)); the reference's table.
_CNN_SPECS = {
    1: (8, [(3, 2, 1), (4, 1, 0)]),
    2: (8, [(3, 2, 1), ((3, 4), 1, 0)]),
    4: (8, [(3, 2, 1), (3, 1, 0)]),
    16: (16, [(3, 2, 1), (3, 2, 1)]),
    64: (16, [(3, 2, 1)]),
    256: (32, [(3, 2, 1)]),
}


def should_replace(step: int, schedule) -> bool:
    """True at steps where `step % every == 0 and step < until` for some [every, until] of `schedule` (step > 0)."""
    return step > 0 and any(step % int(every) == 0 and step < int(until) for every, until in schedule)


class NSVQ(nn.Module):
    """first, future: (B, h*w, dim) encoder tokens of the two frames.

    forward -> (actions (B, L, dim), indices (B, L) int64, perplexity scalar, codebook_error scalar),
    L = code_seq_len; codebook_error = mean squared distance of the chosen codes to the detached inputs.
    """

    def __init__(self, dim: int, codebook_size: int, quant_dim: int, code_seq_len: int, grid: tuple[int, int],
                 threshold: float = 0.1, threshold_mode: str = "batch", noise_scale: float = 0.1, init: str = "normal",
                 replace_from: str = "inputs", lapa_compat: bool = False):
        super().__init__()
        if code_seq_len not in _CNN_SPECS:
            raise ValueError(f"model.code_seq_len={code_seq_len} is not supported; use one of {sorted(_CNN_SPECS)}")
        side, layers = _CNN_SPECS[code_seq_len]
        if tuple(grid) != (side, side):
            raise ValueError(f"model.code_seq_len={code_seq_len} needs a {side}x{side} patch grid, but image_size / "
                             f"patch_size gives {grid[0]}x{grid[1]}; change image_size or patch_size.")
        self.codebook_size, self.quant_dim, self.code_seq_len, self.dim = codebook_size, quant_dim, code_seq_len, dim
        if replace_from not in ("inputs", "codes"):
            raise ValueError(f"model.nsvq.replace_from={replace_from!r}; use 'inputs' or 'codes'")
        if threshold_mode not in ("batch", "share"):
            raise ValueError(f"model.nsvq.threshold_mode={threshold_mode!r}; use 'batch' or 'share'")
        self.threshold, self.noise_scale, self.eps, self.replace_from = threshold, noise_scale, 1e-12, replace_from
        self.threshold_mode, self.lapa_compat = threshold_mode, lapa_compat
        if init == "normal":
            codebooks = torch.randn(codebook_size, quant_dim)
        elif init == "uniform":
            codebooks = torch.empty(codebook_size, quant_dim).uniform_(-1 / codebook_size, 1 / codebook_size)
        else:
            raise ValueError(f"model.nsvq.init={init!r}; use 'normal' or 'uniform'")
        self.codebooks = nn.Parameter(codebooks)
        self.register_buffer("hits", torch.zeros(codebook_size, dtype=torch.int64))  # since the last event
        self.register_buffer("window_batch", torch.zeros((), dtype=torch.int64))  # global batch of the last step
        # The last training batch's (future - first) vectors: candidates for re-seeding dead codes. A buffer, so a
        # resumed run replaces exactly as the uninterrupted one would.
        self.register_buffer("recent_inputs", torch.zeros(0, quant_dim))
        self.project_in = nn.Linear(dim, quant_dim)
        self.project_out = nn.Linear(quant_dim, dim)
        modules: list[nn.Module] = []
        for i, (kernel, stride, padding) in enumerate(layers):
            if i:
                modules.append(nn.ReLU())
            modules.append(nn.Conv2d(quant_dim, quant_dim, kernel, stride=stride, padding=padding))
        self.cnn_encoder = nn.Sequential(*modules)
        self.grid = tuple(grid)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "recent_inputs"
        if key in state_dict:  # its length is the last batch's, so resize before the strict copy
            self.recent_inputs = torch.zeros_like(state_dict[key], device=self.codebooks.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, h*w, dim) -> (B, L, quant_dim)."""
        h, w = self.grid
        x = self.project_in(tokens).transpose(1, 2).reshape(tokens.shape[0], self.quant_dim, h, w)
        return self.cnn_encoder(x).flatten(2).transpose(1, 2)

    def nearest(self, delta: torch.Tensor) -> torch.Tensor:
        """(N, quant_dim) -> (N,) index of the L2-nearest code (ties go to the lower index)."""
        codebooks = self.codebooks.float()
        distances = (delta.pow(2).sum(1, keepdim=True) - 2 * delta @ codebooks.t()
                     + codebooks.pow(2).sum(1)[None, :])
        return distances.argmin(dim=1)

    def forward(self, first: torch.Tensor, future: torch.Tensor):
        batch = first.shape[0]
        delta = (self.encode(future) - self.encode(first)).reshape(-1, self.quant_dim).float()
        indices = self.nearest(delta)
        hard = self.codebooks.float()[indices]
        if self.training:
            noise = torch.randn_like(delta)
            residual_norm = (delta - hard).norm(dim=1, keepdim=True)
            quantized = delta + (residual_norm / noise.norm(dim=1, keepdim=True) + self.eps) * noise
            self._count(indices)
            self.recent_inputs = delta.detach().clone()
        else:
            quantized = hard
        probs = torch.bincount(indices, minlength=self.codebook_size).float() / indices.numel()
        perplexity = torch.exp(-(probs * torch.log(probs + 1e-10)).sum())
        # Mean squared distance of each chosen code to its (detached) input: the k-means objective. NSVQ itself
        # needs no codebook loss; the model adds this one only with model.nsvq.codebook_loss_weight > 0.
        codebook_error = (delta.detach() - hard).pow(2).mean()
        return self._tokens(quantized, batch), indices.reshape(batch, self.code_seq_len), perplexity, codebook_error

    def _tokens(self, quantized: torch.Tensor, batch: int) -> torch.Tensor:
        """(B*L, quant_dim) quantised vectors -> (B, L, dim) action tokens."""
        if self.lapa_compat:  # LAPA's reshape without a permute: token i mixes components of all L codes
            quantized = quantized.reshape(batch, self.quant_dim, self.code_seq_len).transpose(1, 2)
        else:
            quantized = quantized.reshape(batch, self.code_seq_len, self.quant_dim)
        return self.project_out(quantized.to(self.project_out.weight.dtype))

    def actions_from_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """Chosen code ids (B, L) -> (B, L, dim) action tokens, as the eval-mode forward makes them."""
        return self._tokens(self.codebooks[indices.reshape(-1)], indices.shape[0])

    @torch.no_grad()
    def _count(self, indices: torch.Tensor) -> None:
        counts = torch.cat([torch.bincount(indices, minlength=self.codebook_size),
                            torch.tensor([indices.numel() // self.code_seq_len], device=indices.device)])
        dist.all_reduce_sum_(counts)  # every rank holds the global counts, so replacement decisions agree
        self.hits += counts[:-1]
        self.window_batch.fill_(counts[-1])

    @torch.no_grad()
    def replace_dead_codes(self) -> int:
        """Re-seed dead codes and reset the counts. Dead: fewer than threshold * global_batch hits since the last
        event (threshold_mode "batch", LAPA's rule), or a share of those hits below threshold / codebook_size
        ("share": relative to usage, whatever the window's length).

        Returns the number replaced (identical on all ranks). Rank 0 draws the new codes and broadcasts them.
        """
        if self.threshold_mode == "share":
            dead = self.hits.float() / self.hits.sum().clamp_min(1) < self.threshold / self.codebook_size
        else:
            dead = (self.hits.float() / max(int(self.window_batch), 1)) < self.threshold
        n_dead = int(dead.sum())
        if n_dead and dist.is_main():
            if self.replace_from == "inputs" and self.recent_inputs.shape[0] > 0:
                pool = self.recent_inputs.to(self.codebooks.dtype)  # points where the data actually is
            else:
                pool = self.codebooks[~dead] if bool((~dead).any()) else self.codebooks.clone()
            choice = torch.randperm(pool.shape[0], device=pool.device)[:n_dead]
            if choice.numel() < n_dead:  # fewer candidates than dead codes: draw with repetition
                choice = torch.randint(pool.shape[0], (n_dead,), device=pool.device)
            source = pool[choice]
            spread = pool.std(dim=0, keepdim=True, correction=0).clamp_min(1e-6)  # noise on the data's scale
            self.codebooks[dead] = source + self.noise_scale * spread * torch.randn_like(source)
        if n_dead and dist.is_initialized():
            torch_dist.broadcast(self.codebooks.data, src=0)
        self.hits.zero_()
        return n_dead
