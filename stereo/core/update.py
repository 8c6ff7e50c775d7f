"""Iterative refinement: the motion encoder over the lookup and the current disparity, Selective ConvGRUs at
1/16, 1/8 and 1/4 (a 1×1 and a 3×3 GRU mixed by the spatial attention map), the disparity head and the features
of the upsampling mask. Reference: core/update.py (BasicSelectiveMultiUpdateBlock)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stereo.core.layers import EdgeNextConvBlock


class ConvGRU(nn.Module):
    """h' = (1-z)·h + z·q with z, r from [x, h] (already mixed by the caller) and q from [r·h, x]
    (reference: RaftConvGRU)."""

    def __init__(self, hidden_dim: int, input_dim: int, kernel_size: int):
        super().__init__()
        self.convz = nn.Conv2d(hidden_dim + input_dim, hidden_dim, kernel_size, padding=kernel_size // 2)
        self.convr = nn.Conv2d(hidden_dim + input_dim, hidden_dim, kernel_size, padding=kernel_size // 2)
        self.convq = nn.Conv2d(hidden_dim + input_dim, hidden_dim, kernel_size, padding=kernel_size // 2)

    def forward(self, h: torch.Tensor, x: torch.Tensor, hx: torch.Tensor) -> torch.Tensor:
        z = torch.sigmoid(self.convz(hx))
        r = torch.sigmoid(self.convr(hx))
        q = torch.tanh(self.convq(torch.cat([r * h, x], dim=1)))
        return (1 - z) * h + z * q


class SelectiveConvGRU(nn.Module):
    """att (B, 1, h, w) in (0, 1), hidden (B, hidden_dim, h, w), inputs concatenating to input_dim channels ->
    new hidden: att · GRU_1×1 + (1 - att) · GRU_3×3 (small receptive field where the attention map is high)."""

    def __init__(self, hidden_dim: int, input_dim: int):
        super().__init__()
        self.conv0 = nn.Sequential(nn.Conv2d(input_dim, input_dim, 3, padding=1), nn.ReLU())
        self.conv1 = nn.Sequential(nn.Conv2d(input_dim + hidden_dim, input_dim + hidden_dim, 3, padding=1), nn.ReLU())
        self.small_gru = ConvGRU(hidden_dim, input_dim, 1)
        self.large_gru = ConvGRU(hidden_dim, input_dim, 3)

    def forward(self, att: torch.Tensor, h: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
        x = self.conv0(torch.cat(inputs, dim=1))
        hx = self.conv1(torch.cat([x, h], dim=1))
        return self.small_gru(h, x, hx) * att + self.large_gru(h, x, hx) * (1 - att)


class MotionEncoder(nn.Module):
    """Lookup (B, corr_channels, h, w) and disparity (B, 1, h, w) -> (B, out_dim, h, w); the last channel is the
    disparity itself. Reference: BasicMotionEncoder."""

    def __init__(self, corr_channels: int, out_dim: int):
        super().__init__()
        self.convc1 = nn.Conv2d(corr_channels, 256, 1)
        self.convc2 = nn.Conv2d(256, 256, 3, padding=1)
        self.convd1 = nn.Conv2d(1, 64, 7, padding=3)
        self.convd2 = nn.Conv2d(64, 64, 3, padding=1)
        self.conv = nn.Conv2d(64 + 256, out_dim - 1, 3, padding=1)

    def forward(self, disp: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
        corr = F.relu(self.convc2(F.relu(self.convc1(corr))))
        motion = F.relu(self.convd2(F.relu(self.convd1(disp))))
        return torch.cat([F.relu(self.conv(torch.cat([corr, motion], dim=1))), disp], dim=1)


class DispHead(nn.Module):
    """Hidden state (B, hidden_dim, h, w) -> disparity update (B, 1, h, w) in 1/4-res px."""

    def __init__(self, hidden_dim: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(hidden_dim, hidden_dim, 3, padding=1), nn.ReLU(),
                                  EdgeNextConvBlock(hidden_dim), EdgeNextConvBlock(hidden_dim),
                                  nn.Conv2d(hidden_dim, 1, 3, padding=1))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.conv(hidden)


def pool2x(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 3, stride=2, padding=1)


def resize_like(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, like.shape[2:], mode="bilinear", align_corners=True)


class SelectiveUpdateBlock(nn.Module):
    """One iteration. hidden/context/att: lists over (1/4, 1/8, 1/16). Coarse to fine: each GRU sees its context,
    its finer neighbour pooled and its coarser neighbour upsampled; the 1/4 GRU also sees the motion features.
    Returns (hidden, mask_features (B, 32, h, w) for the upsampler, disparity update (B, 1, h, w))."""

    def __init__(self, corr_channels: int, hidden_dim: int, n_gru_layers: int):
        super().__init__()
        if n_gru_layers not in (2, 3):
            # With one layer the reference never runs its 1/4 GRU (it is only called when n_gru_layers > 1).
            raise ValueError(f"n_gru_layers must be 2 or 3, got {n_gru_layers}")
        self.n_gru_layers = n_gru_layers
        self.encoder = MotionEncoder(corr_channels, hidden_dim)
        if n_gru_layers == 3:
            self.gru16 = SelectiveConvGRU(hidden_dim, 2 * hidden_dim)
        self.gru08 = SelectiveConvGRU(hidden_dim, (n_gru_layers == 3) * hidden_dim + 2 * hidden_dim)
        self.gru04 = SelectiveConvGRU(hidden_dim, hidden_dim + 2 * hidden_dim)
        self.disp_head = DispHead(hidden_dim)
        self.mask = nn.Sequential(nn.Conv2d(hidden_dim, 64, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(64, 32, 3, padding=1), nn.ReLU(inplace=True))

    def forward(self, hidden: list[torch.Tensor], context: list[torch.Tensor], corr: torch.Tensor,
                disp: torch.Tensor, att: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        hidden = list(hidden)
        if self.n_gru_layers == 3:
            hidden[2] = self.gru16(att[2], hidden[2], context[2], pool2x(hidden[1]))
            hidden[1] = self.gru08(att[1], hidden[1], context[1], pool2x(hidden[0]), resize_like(hidden[2], hidden[1]))
        else:
            hidden[1] = self.gru08(att[1], hidden[1], context[1], pool2x(hidden[0]))
        motion = torch.cat([context[0], self.encoder(disp, corr)], dim=1)
        hidden[0] = self.gru04(att[0], hidden[0], motion, resize_like(hidden[1], hidden[0]))
        # The 0.25 scale balances the mask's gradients (reference).
        return hidden, 0.25 * self.mask(hidden[0]), self.disp_head(hidden[0])
