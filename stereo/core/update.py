"""Multi-level ConvGRU refinement (1/16, 1/8, 1/4 as RAFT-Stereo / FoundationStereo): a motion encoder over the
correlation lookup and the current disparity, three coupled ConvGRUs, and heads for the disparity update and
the convex-upsampling mask."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvGRU(nn.Module):
    """h' = (1-z)·h + z·q with z, r, q from 3×3 convs over [h, x] plus per-pixel context biases."""

    def __init__(self, hidden_dim: int, input_dim: int, kernel: int = 3):
        super().__init__()
        self.convzr = nn.Conv2d(hidden_dim + input_dim, 2 * hidden_dim, kernel, padding=kernel // 2)
        self.convq = nn.Conv2d(hidden_dim + input_dim, hidden_dim, kernel, padding=kernel // 2)

    def forward(self, hidden: torch.Tensor, context: tuple[torch.Tensor, ...], *inputs: torch.Tensor) -> torch.Tensor:
        cz, cr, cq = context
        x = torch.cat(inputs, dim=1)
        z, r = self.convzr(torch.cat([hidden, x], dim=1)).chunk(2, dim=1)
        z, r = torch.sigmoid(z + cz), torch.sigmoid(r + cr)
        q = torch.tanh(self.convq(torch.cat([r * hidden, x], dim=1)) + cq)
        return (1 - z) * hidden + z * q


class MotionEncoder(nn.Module):
    """Lookup features (B, corr_channels, h, w) and disparity (B, 1, h, w) -> (B, out_dim, h, w); the last
    channel is the disparity itself, so the GRU always sees where it is."""

    def __init__(self, corr_channels: int, out_dim: int = 128):
        super().__init__()
        self.corr = nn.Sequential(nn.Conv2d(corr_channels, 64, 1), nn.ReLU(inplace=True),
                                  nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(inplace=True))
        self.disp = nn.Sequential(nn.Conv2d(1, 64, 7, padding=3), nn.ReLU(inplace=True),
                                  nn.Conv2d(64, 32, 3, padding=1), nn.ReLU(inplace=True))
        self.out = nn.Conv2d(96, out_dim - 1, 3, padding=1)

    def forward(self, corr: torch.Tensor, disp: torch.Tensor) -> torch.Tensor:
        motion = F.relu(self.out(torch.cat([self.corr(corr), self.disp(disp)], dim=1)))
        return torch.cat([motion, disp], dim=1)


def pool2x(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 3, stride=2, padding=1)


def resize_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=True)


class UpdateBlock(nn.Module):
    """One refinement iteration. hidden_dims = (h_1/4, h_1/8, h_1/16); n_gru_layers of them are used
    (1: only 1/4; 2: 1/4 and 1/8; 3: all). forward returns the new hidden states and the disparity update
    (B, 1, h, w) in 1/4-res pixels; `upsample_mask(hidden[0])` gives the convex-upsampling logits
    (B, 9·16, h, w), computed only for the iterations whose prediction is upsampled."""

    def __init__(self, corr_channels: int, hidden_dims: tuple[int, int, int], n_gru_layers: int = 3,
                 motion_dim: int = 128, factor: int = 4):
        super().__init__()
        self.n_gru_layers = n_gru_layers
        h4, h8, h16 = hidden_dims
        self.encoder = MotionEncoder(corr_channels, motion_dim)
        self.gru04 = ConvGRU(h4, motion_dim + (h8 if n_gru_layers > 1 else 0))
        self.gru08 = ConvGRU(h8, h4 + (h16 if n_gru_layers > 2 else 0)) if n_gru_layers > 1 else None
        self.gru16 = ConvGRU(h16, h8) if n_gru_layers > 2 else None
        self.disp_head = nn.Sequential(nn.Conv2d(h4, 128, 3, padding=1), nn.ReLU(inplace=True),
                                       nn.Conv2d(128, 1, 3, padding=1))
        self.mask_head = nn.Sequential(nn.Conv2d(h4, 128, 3, padding=1), nn.ReLU(inplace=True),
                                       nn.Conv2d(128, 9 * factor * factor, 1))

    def forward(self, hidden: list[torch.Tensor], context: list[tuple], corr: torch.Tensor,
                disp: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        hidden = list(hidden)
        # Coarse to fine: each level sees its finer neighbour pooled and its coarser neighbour upsampled.
        if self.n_gru_layers > 2:
            hidden[2] = self.gru16(hidden[2], context[2], pool2x(hidden[1]))
        if self.n_gru_layers > 1:
            coarser = [resize_to(hidden[2], hidden[1])] if self.n_gru_layers > 2 else []
            hidden[1] = self.gru08(hidden[1], context[1], pool2x(hidden[0]), *coarser)
        motion = self.encoder(corr, disp)
        coarser = [resize_to(hidden[1], hidden[0])] if self.n_gru_layers > 1 else []
        hidden[0] = self.gru04(hidden[0], context[0], motion, *coarser)
        return hidden, self.disp_head(hidden[0])

    def upsample_mask(self, hidden_quarter: torch.Tensor) -> torch.Tensor:
        # The 0.25 keeps the initial mask logits small, so early training upsamples almost bilinearly.
        return 0.25 * self.mask_head(hidden_quarter)
