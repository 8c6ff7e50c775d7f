"""Convolution blocks of FoundationStereo. Attribute names (`conv`, `bn`, `conv1.0`, `norm3`, ...) are those of
the reference's modules, so the released state dict loads key for key; the docstrings name the reference class.

Norms: "batch" (BatchNorm, with running statistics), "instance" (InstanceNorm without affine parameters, so it
has no state-dict entries), or "none".
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _norm(kind: str, channels: int, dims: int) -> nn.Module:
    if kind == "batch":
        return (nn.BatchNorm2d, nn.BatchNorm3d)[dims - 2](channels)
    if kind == "instance":
        return (nn.InstanceNorm2d, nn.InstanceNorm3d)[dims - 2](channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}: expected batch, instance or none")


class ConvNormAct(nn.Module):
    """Bias-free (transposed) conv -> norm -> LeakyReLU(0.01); the reference's BasicConv and BasicConv_IN.

    dims: 2 or 3 (Conv2d / Conv3d); `**conv_args` are kernel_size, stride, padding, groups.
    """

    def __init__(self, in_channels: int, out_channels: int, dims: int = 2, deconv: bool = False,
                 norm: str = "batch", act: bool = True, **conv_args):
        super().__init__()
        conv = {(2, False): nn.Conv2d, (2, True): nn.ConvTranspose2d,
                (3, False): nn.Conv3d, (3, True): nn.ConvTranspose3d}[dims, deconv]
        self.conv = conv(in_channels, out_channels, bias=False, **conv_args)
        self.bn = _norm(norm, out_channels, dims)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.leaky_relu(x, 0.01) if self.act else x


class AxialPlanarConv3d(nn.Module):
    """The "axial-planar" 3D convolution of AHCF (reference: Conv3dNormActReduced): a (1, k, k) spatial conv and a
    (k_disp, 1, 1) conv along disparity, each with BatchNorm and ReLU. (B, C_in, D, H, W) -> (B, C_out, D, H, W)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, kernel_disp: int = 17):
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv3d(in_channels, out_channels, (1, kernel_size, kernel_size), padding=(0, kernel_size // 2, kernel_size // 2)),
            nn.BatchNorm3d(out_channels), nn.ReLU())
        self.conv2 = nn.Sequential(
            nn.Conv3d(out_channels, out_channels, (kernel_disp, 1, 1), padding=(kernel_disp // 2, 0, 0)),
            nn.BatchNorm3d(out_channels), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class BasicBlock(nn.Module):
    """ResNet basic block, bias-free convs, identity shortcut (reference: ResnetBasicBlock / ResnetBasicBlock3D)."""

    def __init__(self, channels: int, dims: int = 2, norm: str = "batch"):
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        self.conv1 = conv(channels, channels, 3, padding=1, bias=False)
        self.bn1 = _norm(norm, channels, dims)
        self.conv2 = conv(channels, channels, 3, padding=1, bias=False)
        self.bn2 = _norm(norm, channels, dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + x)


class ResidualBlock(nn.Module):
    """RAFT's residual block: two 3×3 convs with bias, each normed and ReLU'd, plus a (strided 1×1) shortcut.

    As in the reference, the shortcut's norm is registered twice (`norm3` and `downsample.1`), so both keys
    are in the state dict.
    """

    def __init__(self, in_channels: int, channels: int, norm: str = "batch", stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, padding=1, stride=stride)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm1 = _norm(norm, channels, 2)
        self.norm2 = _norm(norm, channels, 2)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.norm3 = _norm(norm, channels, 2)
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride=stride), self.norm3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = F.relu(self.norm2(self.conv2(y)))
        if self.downsample is not None:
            x = self.downsample(x)
        return F.relu(x + y)


class UpConcat(nn.Module):
    """×2 transposed conv of a coarse map, concatenated with the finer skip map, then fused to 2·out channels.

    instance=True: the feature decoder's Conv2x_IN (InstanceNorm, fused by a BasicBlock);
    instance=False: the upsampling head's Conv2x with bn=False (fused by one conv + LeakyReLU).
    (B, in, h, w), (B, out, 2h, 2w) -> (B, 2·out, 2h, 2w).
    """

    def __init__(self, in_channels: int, out_channels: int, instance: bool = True):
        super().__init__()
        norm = "instance" if instance else "none"
        self.conv1 = ConvNormAct(in_channels, out_channels, deconv=True, norm=norm, kernel_size=4, stride=2, padding=1)
        self.conv2 = (BasicBlock(2 * out_channels, norm="instance") if instance else
                      ConvNormAct(2 * out_channels, 2 * out_channels, norm="none", kernel_size=3, padding=1))

    def forward(self, coarse: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.conv1(coarse)
        if x.shape != skip.shape:  # odd sizes: the deconv overshoots by one pixel
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear")
        return self.conv2(torch.cat([x, skip], dim=1))


class EdgeNextConvBlock(nn.Module):
    """EdgeNeXt-style block without norm (reference: EdgeNextConvEncoder(norm=None)): 7×7 depthwise conv,
    pointwise MLP (×4, GELU), layer scale `gamma`, residual. (B, C, H, W) -> same."""

    def __init__(self, channels: int, expansion: int = 4, kernel_size: int = 7):
        super().__init__()
        self.dwconv = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)
        self.pwconv1 = nn.Linear(channels, expansion * channels)
        self.pwconv2 = nn.Linear(expansion * channels, channels)
        self.gamma = nn.Parameter(torch.full((channels,), 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.gamma * self.pwconv2(F.gelu(self.pwconv1(y)))
        return x + y.permute(0, 3, 1, 2)
