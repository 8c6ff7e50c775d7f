"""Validation of a VAE: loss with the training kld_weight, reconstruction metrics in [0, 1] units, KL per latent
dimension and active units, and the same metrics for the baselines (mean training image, PCA of the latent size),
summed over this rank's shard and reduced over all ranks."""
from __future__ import annotations

import torch

from common import dist, metrics
from common.amp import autocast
from vae_latent.vanilla_vae_model import kl_per_dim, to_unit_range, vae_loss

# A latent dimension is "active" when its posterior mean varies across inputs: Var_x(E[z_u | x]) > 0.01
# (Burda et al., 2016). Inactive dimensions carry no information about the image.
ACTIVE_UNIT_THRESHOLD = 0.01
IMAGE_METRICS = ("mse", "psnr", "ssim")


def image_metrics(pred01: torch.Tensor, target01: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image metrics of (B, C, H, W) images in [0, 1] (data range 1): {"mse", "psnr", "ssim"}, each (B,).
    Every row of every table (model or baseline) is scored by this function and averaged over images."""
    pred01 = pred01.float().clamp(0, 1)
    return {"mse": metrics.mse(pred01, target01), "psnr": metrics.psnr(pred01, target01, data_range=1.0),
            "ssim": metrics.ssim(pred01, target01, data_range=1.0)}


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader, device: torch.device, kld_weight: float,
             amp_dtype: torch.dtype = torch.float32, baselines: dict | None = None) -> dict[str, float | torch.Tensor]:
    """Decode the posterior mean of every validation image (deterministic) and return flat metrics:
    val/loss, val/recon_loss ([-1, 1] MSE, as in training), val/mse, val/psnr, val/ssim (on [0, 1], data range 1,
    means of per-image values), val/kld (nats per image), val/active_units, val/images; for each baseline `name`
    (see vae_latent/baselines.py) val/<name>_mse, _psnr, _ssim computed the same way, and val/baseline_mse /
    val/baseline_psnr for the strongest of them (lowest MSE); "kld_per_dim" (latent,) for the histogram.
    Restores the model's train/eval mode."""
    was_training = model.training
    model.eval()
    baselines = {name: b.to(device) for name, b in (baselines or {}).items()}
    rows = ["vae", *baselines]
    scalar_sums = torch.zeros(4, dtype=torch.float64, device=device)  # n, loss, recon, kld
    metric_sums = torch.zeros(len(rows), len(IMAGE_METRICS), dtype=torch.float64, device=device)
    mu_sum = torch.zeros(model.latent_dim, dtype=torch.float64, device=device)
    mu_sq_sum = torch.zeros_like(mu_sum)
    kl_dim_sum = torch.zeros_like(mu_sum)
    for batch in loader:
        if batch is None or "image" not in batch:
            continue
        images = batch["image"].to(device, non_blocking=True)
        with autocast(device, amp_dtype):
            out = model(images, sample=False)
        losses = vae_loss(out["recons"], images, out["mu"], out["log_var"], kld_weight)
        target01 = to_unit_range(images)
        predictions = {"vae": to_unit_range(out["recons"].float()),
                       **{name: b.reconstruct(target01) for name, b in baselines.items()}}
        for row, name in enumerate(rows):
            values = image_metrics(predictions[name], target01)
            metric_sums[row] += torch.stack([values[m].double().sum() for m in IMAGE_METRICS])
        kl = kl_per_dim(out["mu"].float(), out["log_var"].float())
        n = images.shape[0]
        scalar_sums += torch.tensor([n, losses["loss"].item() * n, losses["recon"].item() * n,
                                     kl.sum(dim=1).sum().item()], dtype=torch.float64, device=device)
        mu = out["mu"].double()
        mu_sum += mu.sum(0)
        mu_sq_sum += mu.pow(2).sum(0)
        kl_dim_sum += kl.double().sum(0)
    for tensor in (scalar_sums, metric_sums, mu_sum, mu_sq_sum, kl_dim_sum):
        dist.all_reduce_sum_(tensor)
    model.train(was_training)
    n = scalar_sums[0].item()
    if n == 0:
        raise RuntimeError("The validation set produced no images (all frames unreadable, or it is empty).")
    mu_var = mu_sq_sum / n - (mu_sum / n).pow(2)
    means = (metric_sums / n).tolist()
    results: dict[str, float | torch.Tensor] = {
        "val/loss": scalar_sums[1].item() / n, "val/recon_loss": scalar_sums[2].item() / n,
        **{f"val/{m}": means[0][j] for j, m in enumerate(IMAGE_METRICS)},
        "val/kld": scalar_sums[3].item() / n, "val/active_units": int((mu_var > ACTIVE_UNIT_THRESHOLD).sum().item()),
        "val/images": int(n),
    }
    for row, name in enumerate(rows[1:], start=1):
        results.update({f"val/{name}_{m}": means[row][j] for j, m in enumerate(IMAGE_METRICS)})
    if baselines:
        strongest = min(rows[1:], key=lambda name: results[f"val/{name}_mse"])
        results.update({"val/baseline_mse": results[f"val/{strongest}_mse"],
                        "val/baseline_psnr": results[f"val/{strongest}_psnr"]})
    if "pca" in baselines:
        results["val/pca_components"] = baselines["pca"].k
    results["kld_per_dim"] = (kl_dim_sum / n).float().cpu()
    return results
