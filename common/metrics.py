"""Image reconstruction metrics. The data range is always passed explicitly (1.0 for [0,1] images, 2.0 for [-1,1])."""
from __future__ import annotations

import torch


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image: (B, ...) -> (B,)."""
    return (pred.float() - target.float()).pow(2).flatten(1).mean(dim=1)


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float) -> torch.Tensor:
    """PSNR in dB per image, (B, C, H, W) -> (B,); average the result over images (not the MSE over the batch)."""
    error = mse(pred, target).clamp_min(1e-12)
    return 10.0 * torch.log10(data_range**2 / error)


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float) -> torch.Tensor:
    """SSIM per image (Gaussian window 11, sigma 1.5, as Wang et al. 2004), (B, C, H, W) -> (B,)."""
    # Imported here: torchmetrics pulls in torchvision, seconds of start-up that scripts without SSIM skip.
    from torchmetrics.functional.image import structural_similarity_index_measure

    return structural_similarity_index_measure(pred.float(), target.float(), data_range=data_range,
                                               reduction="none")
