"""Validation of a VAE: loss with the training kld_weight, reconstruction metrics in [0, 1] units, KL per latent
dimension and active units, summed over this rank's shard and reduced over all ranks."""
from __future__ import annotations

import math

import torch

from common import dist, metrics
from common.amp import autocast
from vae_latent.vanilla_vae_model import kl_per_dim, to_unit_range, vae_loss

# A latent dimension is "active" when its posterior mean varies across inputs: Var_x(E[z_u | x]) > 0.01
# (Burda et al., 2016). Inactive dimensions carry no information about the image.
ACTIVE_UNIT_THRESHOLD = 0.01


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader, device: torch.device, kld_weight: float,
             amp_dtype: torch.dtype = torch.float32) -> dict[str, float | torch.Tensor]:
    """Decode the posterior mean of every validation image (deterministic) and return flat metrics:
    val/loss, val/recon_loss ([-1, 1] MSE, as in training), val/mse, val/psnr, val/ssim (on [0, 1], data range 1),
    val/kld (nats per image), val/active_units, the mean-image baseline (val/baseline_mse, and val/baseline_psnr
    from that mean MSE; meaningful with more than a few validation images), and "kld_per_dim" (latent,) for the
    histogram. Restores the model's train/eval mode."""
    was_training = model.training
    model.eval()
    latent = model.latent_dim
    sums = torch.zeros(7, dtype=torch.float64, device=device)  # n, loss, recon, mse, psnr, ssim, kld
    mu_sum = torch.zeros(latent, dtype=torch.float64, device=device)
    mu_sq_sum = torch.zeros_like(mu_sum)
    kl_dim_sum = torch.zeros_like(mu_sum)
    side = model.image_size
    pixel_sum = torch.zeros(model.in_channels, side, side, dtype=torch.float64, device=device)
    pixel_sq_sum = torch.zeros_like(pixel_sum)
    for batch in loader:
        if batch is None or "image" not in batch:
            continue
        images = batch["image"].to(device, non_blocking=True)
        with autocast(device, amp_dtype):
            out = model(images, sample=False)
        losses = vae_loss(out["recons"], images, out["mu"], out["log_var"], kld_weight)
        pred01, true01 = to_unit_range(out["recons"].float()), to_unit_range(images)
        n = images.shape[0]
        kl = kl_per_dim(out["mu"].float(), out["log_var"].float())
        per_image = [metrics.mse(pred01, true01), metrics.psnr(pred01, true01, data_range=1.0),
                     metrics.ssim(pred01, true01, data_range=1.0), kl.sum(dim=1)]
        sums += torch.tensor([n, losses["loss"].item() * n, losses["recon"].item() * n]
                             + [values.sum().item() for values in per_image], dtype=torch.float64, device=device)
        mu = out["mu"].double()
        mu_sum += mu.sum(0)
        mu_sq_sum += mu.pow(2).sum(0)
        kl_dim_sum += kl.double().sum(0)
        pixel_sum += true01.double().sum(0)
        pixel_sq_sum += true01.double().pow(2).sum(0)
    for tensor in (sums, mu_sum, mu_sq_sum, kl_dim_sum, pixel_sum, pixel_sq_sum):
        dist.all_reduce_sum_(tensor)
    model.train(was_training)
    n = sums[0].item()
    if n == 0:
        raise RuntimeError("The validation set produced no images (all frames unreadable, or it is empty).")
    mu_var = mu_sq_sum / n - (mu_sum / n).pow(2)
    # Trivial baseline: predict every image by the mean validation image (the best constant prediction, so an
    # optimistic baseline); its MSE is the per-pixel variance, averaged over pixels.
    baseline_mse = (pixel_sq_sum / n - (pixel_sum / n).pow(2)).mean().clamp_min(1e-10).item()
    return {
        "val/loss": sums[1].item() / n, "val/recon_loss": sums[2].item() / n, "val/mse": sums[3].item() / n,
        "val/psnr": sums[4].item() / n, "val/ssim": sums[5].item() / n, "val/kld": sums[6].item() / n,
        "val/active_units": int((mu_var > ACTIVE_UNIT_THRESHOLD).sum().item()),
        "val/baseline_mse": baseline_mse, "val/baseline_psnr": 10.0 * math.log10(1.0 / baseline_mse),
        "val/images": int(n),
        "kld_per_dim": (kl_dim_sum / n).float().cpu(),
    }
