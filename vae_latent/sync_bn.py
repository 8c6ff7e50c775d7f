"""Synchronised BatchNorm for DDP on every device.

`nn.SyncBatchNorm` refuses CPU tensors (its kernels are CUDA-only), so CPU runs under gloo would silently fall
back to per-rank statistics. `AllReduceBatchNorm2d` computes the batch mean and variance over all ranks with two
differentiable all-reduces instead; on CUDA the built-in `nn.SyncBatchNorm` is used.
"""
from __future__ import annotations

import torch
import torch.distributed as torch_dist
from torch import nn


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks, differentiable: the gradient of every rank's copy of the sum is the sum of the ranks'
    gradients. (torch.distributed.nn.functional.all_reduce did this and is deprecated; the functional collectives
    that replace it are not differentiable on every backend.)"""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.clone()
        torch_dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        torch_dist.all_reduce(grad)
        return grad


def all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    return _AllReduceSum.apply(tensor)


class AllReduceBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch (all ranks together).

    Same parameters and buffers as nn.BatchNorm2d, so state dicts are interchangeable. Input/output (B, C, H, W).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and torch_dist.is_available() and torch_dist.is_initialized()
                and torch_dist.get_world_size() > 1):
            return super().forward(x)
        # Ranks may hold different batch sizes (last batch): weight each by its element count.
        local_count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
        sums = all_reduce(torch.cat([x.sum(dim=(0, 2, 3)), local_count]))
        count = sums[-1]
        mean = sums[:-1] / count
        centred = x - mean.view(1, -1, 1, 1)
        var = all_reduce(centred.pow(2).sum(dim=(0, 2, 3))) / count  # two passes: stable for large means
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var * count / (count - 1).clamp_min(1)
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(unbiased.detach(), momentum)
        out = centred * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        if self.affine:
            out = out * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return out


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm2d of `model` synchronised over the process group: nn.SyncBatchNorm on CUDA,
    AllReduceBatchNorm2d elsewhere. Weights and running statistics are kept."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, AllReduceBatchNorm2d):
            synced = AllReduceBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                          child.track_running_stats).to(device)
            synced.load_state_dict(child.state_dict())
            setattr(model, name, synced)
        else:
            convert_sync_batchnorm(child, device)
    return model
