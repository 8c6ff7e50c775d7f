"""Latent-action statistics and the validation pass: reconstruction vs the copy-frame baseline, whether the codes
carry the change (PSNR with the true codes vs the codes of another pair), codebook use, and whether codes match the
true action (normalised mutual information)."""
from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

import numpy as np
import torch

from common import dist
from common.metrics import mse, psnr
from laq.inference import codes_to_action_id

SHUFFLE_PARTNERS = 4  # other pairs whose codes each validation pair is decoded with (averaged: a steadier estimate)


def perplexity_per_position(codes: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """codes (N, L) -> (L,) exp(entropy) of each position's code distribution (1 = one code, K = uniform)."""
    values = []
    for position in range(codes.shape[1]):
        probs = torch.bincount(codes[:, position], minlength=codebook_size).double() / codes.shape[0]
        values.append(torch.exp(-(probs * torch.log(probs.clamp_min(1e-12))).sum()))
    return torch.stack(values).float()


def entropy(counts: Sequence[int]) -> float:
    total = float(sum(counts))
    return -sum(c / total * math.log(c / total) for c in counts if c)


def normalized_mutual_information(a: Sequence[int], b: Sequence[int]) -> float:
    """NMI with arithmetic-mean normalisation, 2 I(A;B) / (H(A) + H(B)), in [0, 1]; 0 when both are constant."""
    if len(a) != len(b) or not len(a):
        raise ValueError("NMI needs two equally long, non-empty label lists")
    joint = Counter(zip(a, b))
    h_a, h_b = entropy(list(Counter(a).values())), entropy(list(Counter(b).values()))
    h_ab = entropy(list(joint.values()))
    mutual = h_a + h_b - h_ab
    return 0.0 if h_a + h_b == 0 else max(0.0, 2.0 * mutual / (h_a + h_b))


def batch_code_stats(indices: torch.Tensor, codebook_size: int) -> dict[str, float]:
    """Per-batch training statistics from code ids (B, L)."""
    perplexity = perplexity_per_position(indices, codebook_size)
    stats = {"unique_codes": float(indices.unique().numel()),
             "unique_sequences": float(codes_to_action_id(indices, codebook_size).unique().numel()),
             "perplexity": float(perplexity.mean())}
    stats.update({f"perplexity_pos{i}": float(v) for i, v in enumerate(perplexity)})
    return stats


def _gather(values: list) -> list:
    if not dist.is_initialized():
        return values
    gathered = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, values)
    return [item for part in gathered for item in part]


@torch.no_grad()
def evaluate(model, loader, device, autocast_ctx, codebook_size: int, max_batches: int | None = None,
             seed: int = 0) -> tuple[dict[str, float], dict | None]:
    """Validation over `loader` (this rank's share; results gathered over ranks).

    Returns (metrics with flat "val/..." keys, one batch {"first","future","recon"} for image grids or None).
    Metrics: mse, psnr (per-image mean, data range 1), copy_mse / copy_psnr (predict frame t for t+offset),
    psnr_shuffled_codes (decode each pair with the codes of other pairs of its batch: the mean PSNR over the next
    SHUFFLE_PARTNERS pairs, the batches being in a fixed shuffled order) and shuffled_codes_gap =
    psnr - psnr_shuffled_codes in dB (about 0 when the codes carry nothing about the change), unique_codes,
    unique_sequences, coverage (distinct sequences / K^L), perplexity (mean over positions), perplexity_pos{i},
    and with labels action_nmi plus action_nmi_random (same codes, shuffled: the chance level).
    """
    model.eval()
    decoder = dist.unwrap(model)
    rows, shuffled_rows, codes, labels, sample = [], [], [], [], None
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        if batch is None or batch.get("empty"):
            continue
        batch.pop("skipped", None)
        first, future = batch["first"].to(device), batch["future"].to(device)
        with autocast_ctx():
            out = model(first, future)
        recon = out["recon"].float()
        rows += torch.stack([mse(recon, future), psnr(recon, future, 1.0), mse(first, future),
                             psnr(first, future, 1.0)], dim=1).cpu().tolist()
        if first.shape[0] > 1:  # other pairs' codes: the next SHUFFLE_PARTNERS pairs of the (shuffled) batch
            others = []
            for shift in range(1, min(SHUFFLE_PARTNERS, first.shape[0] - 1) + 1):
                with autocast_ctx():
                    others.append(psnr(decoder.decode_codes(first, out["indices"].roll(shift, dims=0)).float(),
                                       future, 1.0))
            shuffled_rows += torch.stack([psnr(recon, future, 1.0), torch.stack(others).mean(0)], dim=1).cpu().tolist()
        codes += out["indices"].cpu().tolist()
        labels += batch["label"].tolist()
        if sample is None:
            sample = {"first": first[:4].cpu(), "future": future[:4].cpu(), "recon": recon[:4].cpu()}
    rows, shuffled_rows, codes, labels = _gather(rows), _gather(shuffled_rows), _gather(codes), _gather(labels)
    model.train()
    if not rows:
        return {}, sample
    table = np.asarray(rows, dtype=np.float64)
    code_tensor = torch.tensor(codes, dtype=torch.int64)
    sequences = codes_to_action_id(code_tensor, codebook_size)
    perplexity = perplexity_per_position(code_tensor, codebook_size)
    metrics = {"val/mse": table[:, 0].mean(), "val/psnr": table[:, 1].mean(), "val/copy_mse": table[:, 2].mean(),
               "val/copy_psnr": table[:, 3].mean(), "val/unique_codes": float(code_tensor.unique().numel()),
               "val/unique_sequences": float(sequences.unique().numel()),
               "val/coverage": float(sequences.unique().numel()) / codebook_size ** code_tensor.shape[1],
               "val/perplexity": float(perplexity.mean()), "val/samples": float(len(rows))}
    if shuffled_rows:  # the gap over the same pairs (a batch of one has no other pair)
        paired = np.asarray(shuffled_rows, dtype=np.float64)
        metrics["val/psnr_shuffled_codes"] = paired[:, 1].mean()
        metrics["val/shuffled_codes_gap"] = (paired[:, 0] - paired[:, 1]).mean()
    metrics.update({f"val/perplexity_pos{i}": float(v) for i, v in enumerate(perplexity)})
    labelled = [(s, y) for s, y in zip(sequences.tolist(), labels) if y >= 0]
    if labelled:
        seq, lab = zip(*labelled)
        metrics["val/action_nmi"] = normalized_mutual_information(seq, lab)
        shuffled = list(seq)
        np.random.default_rng(seed).shuffle(shuffled)
        metrics["val/action_nmi_random"] = normalized_mutual_information(shuffled, lab)
    return {k: float(v) for k, v in metrics.items()}, sample
