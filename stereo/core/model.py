"""StereoModel: features -> cost volume -> 3D hourglass -> soft-argmin d0 -> ConvGRU refinement with correlation
lookups -> convex upsampling. The model config keys and their defaults are MODEL_DEFAULTS."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from stereo.core.corr import IMPLEMENTATIONS, CorrelationLookup
from stereo.core.cost_volume import CostVolume
from stereo.core.features import ContextNet, FeatureNet
from stereo.core.hourglass import Hourglass, VolumeHeads, soft_argmin
from stereo.core.update import UpdateBlock
from stereo.core.upsample import InputPadder, convex_upsample, upsample_disparity
from stereo.core.vit import IMAGENET_MEAN, IMAGENET_STD, VIT_SIZES, VitBranch

MODEL_DEFAULTS = {
    "max_disp": 416,                      # px at full resolution; multiple of 32 (three stride-2 3D levels at 1/4)
    "feature_type": "cnn",                # "cnn" or "dinov2" (CNN + frozen DINOv2 branch)
    "correlation_implementation": "reg",  # "reg": precomputed pyramid; "alt": on the fly (less memory)
    "n_gru_layers": 3,                    # ConvGRU levels used: 1/4, then 1/8, then 1/16
    "hidden_dims": [128, 128, 128],       # GRU hidden channels at 1/4, 1/8, 1/16
    "corr_levels": 2,
    "corr_radius": 4,
    "train_iters": 22,
    "valid_iters": 32,
    "feature_channels": [32, 48, 96, 160, 304],  # CNN encoder widths at 1/2 ... 1/32
    "feature_dim": 128,                   # matching features at 1/4
    "cv_groups": 8,                       # group-wise correlation groups
    "concat_dim": 12,                     # 1×1-projected channels per view in the concatenation volume
    "volume_dim": 16,                     # 3D channels at full volume resolution (hourglass: ×2, ×4, ×6)
    "geo_dim": 8,                         # channels of the geometry volume the GRU samples
    "disp_kernel": 17,                    # axial conv length along disparity
    "motion_dim": 128,
    "vit_size": "vitl",                   # dinov2 only: vits | vitb | vitl
    "vit_weights": None,                  # dinov2 only: local path to DINOv2 weights (never downloaded)
    "vit_dim": 64,                        # dinov2 only: projected ViT channels added at 1/4
}


def validate_model_config(cfg: dict) -> None:
    """Raise ValueError with a message naming the key for values the model cannot use."""
    if cfg["max_disp"] <= 0 or cfg["max_disp"] % 32:
        raise ValueError(f"model.max_disp must be a positive multiple of 32 (the 1/4-res volume goes through three "
                         f"stride-2 levels), got {cfg['max_disp']}")
    if cfg["feature_type"] not in ("cnn", "dinov2"):
        raise ValueError(f"model.feature_type must be 'cnn' or 'dinov2', got {cfg['feature_type']!r}")
    if cfg["correlation_implementation"] not in IMPLEMENTATIONS:
        raise ValueError(f"model.correlation_implementation must be one of {IMPLEMENTATIONS}, "
                         f"got {cfg['correlation_implementation']!r}")
    if cfg["n_gru_layers"] not in (1, 2, 3):
        raise ValueError(f"model.n_gru_layers must be 1, 2 or 3, got {cfg['n_gru_layers']}")
    if len(cfg["hidden_dims"]) != 3:
        raise ValueError(f"model.hidden_dims needs 3 entries (1/4, 1/8, 1/16), got {cfg['hidden_dims']}")
    if len(cfg["feature_channels"]) != 5:
        raise ValueError(f"model.feature_channels needs 5 entries (1/2 ... 1/32), got {cfg['feature_channels']}")
    if cfg["feature_type"] == "dinov2" and cfg["vit_size"] not in VIT_SIZES:
        raise ValueError(f"model.vit_size must be one of {sorted(VIT_SIZES)}, got {cfg['vit_size']!r}")


class StereoModel(nn.Module):
    """forward(left, right) with (B, 3, H, W) RGB in [0, 1], any H, W (padded to ×32 inside) returns a dict:
      "disparity": (B, 1, H, W) final prediction, full-resolution pixels (x_right = x_left - d);
      "init_disparity": (B, 1, H, W) the soft-argmin d0 bilinearly upsampled (values ×4);
      "disparities": list of (B, 1, H, W), one per GRU iteration (training, or return_all=True).
    """

    def __init__(self, **cfg):
        super().__init__()
        cfg = {**MODEL_DEFAULTS, **cfg}
        unknown = sorted(set(cfg) - set(MODEL_DEFAULTS))
        if unknown:
            raise ValueError(f"Unknown model config keys {unknown}; known: {sorted(MODEL_DEFAULTS)}")
        validate_model_config(cfg)
        self.cfg = cfg
        self.gradient_checkpointing = False
        hidden_dims = tuple(cfg["hidden_dims"])
        self.features = FeatureNet(tuple(cfg["feature_channels"]), cfg["feature_dim"])
        pyramid_channels = list(self.features.pyramid_channels)
        self.vit = None
        if cfg["feature_type"] == "dinov2":
            self.vit = VitBranch(cfg["vit_size"], cfg["vit_weights"], cfg["vit_dim"])
            self.vit_fuse = nn.Conv2d(cfg["feature_dim"] + cfg["vit_dim"], cfg["feature_dim"], 1)
            pyramid_channels[0] += cfg["vit_dim"]
        levels = cfg["n_gru_layers"]  # only the GRU levels in use get context (unused parameters would break DDP)
        self.context = ContextNet(tuple(pyramid_channels[:levels]), hidden_dims[:levels])
        self.cost_volume = CostVolume(cfg["feature_dim"], cfg["max_disp"], cfg["cv_groups"], cfg["concat_dim"],
                                      cfg["volume_dim"], cfg["disp_kernel"])
        self.hourglass = Hourglass(cfg["volume_dim"], cfg["disp_kernel"])
        self.volume_heads = VolumeHeads(cfg["volume_dim"], cfg["geo_dim"])
        corr_channels = cfg["corr_levels"] * (cfg["geo_dim"] + 1) * (2 * cfg["corr_radius"] + 1)
        self.update = UpdateBlock(corr_channels, hidden_dims, cfg["n_gru_layers"], cfg["motion_dim"])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def _features(self, left: torch.Tensor, right: torch.Tensor):
        images = (torch.cat([left, right], dim=0) - self.mean) / self.std
        out = self.features(images)
        match_left, match_right = out["match"].chunk(2, dim=0)
        pyramid = [level[: left.shape[0]] for level in out["pyramid"]]
        if self.vit is not None:
            vit_left, vit_right = self.vit(images).chunk(2, dim=0)
            match_left = self.vit_fuse(torch.cat([match_left, vit_left], dim=1))
            match_right = self.vit_fuse(torch.cat([match_right, vit_right], dim=1))
            pyramid[0] = torch.cat([pyramid[0], vit_left], dim=1)
        return match_left, match_right, pyramid

    def forward(self, left: torch.Tensor, right: torch.Tensor, iters: int | None = None,
                return_all: bool | None = None) -> dict:
        iters = iters if iters is not None else (self.cfg["train_iters"] if self.training else self.cfg["valid_iters"])
        return_all = self.training if return_all is None else return_all
        padder = InputPadder(left.shape, 32)
        left, right = padder.pad_images(left, right)

        match_left, match_right, pyramid = self._features(left, right)
        hidden, context = self.context(pyramid[: self.cfg["n_gru_layers"]])
        volume = self.hourglass(self.cost_volume(match_left, match_right))
        cost_logits, geometry = self.volume_heads(volume)
        disp = soft_argmin(cost_logits)  # (B, 1, H/4, W/4) in 1/4-res pixels
        outputs = {"init_disparity": padder.unpad(upsample_disparity(disp, 4))}

        lookup = CorrelationLookup(geometry, match_left, match_right, self.cfg["corr_levels"],
                                   self.cfg["corr_radius"], self.cfg["correlation_implementation"])

        def iteration(disp_in: torch.Tensor, *hidden_in: torch.Tensor):
            new_hidden, delta = self.update(list(hidden_in), context, lookup(disp_in), disp_in)
            return (disp_in + delta, *new_hidden)

        predictions = []
        for index in range(iters):
            disp = disp.detach()  # each iteration learns its own residual (RAFT): no gradient through the chain
            if self.gradient_checkpointing and torch.is_grad_enabled():
                # The GRU activations of all iterations dominate training memory; recompute them in backward.
                disp, *hidden = checkpoint(iteration, disp, *hidden, use_reentrant=False)
            else:
                disp, *hidden = iteration(disp, *hidden)
            if return_all or index == iters - 1:  # the mask is only needed where a prediction is upsampled
                mask = self.update.upsample_mask(hidden[0])
                predictions.append(padder.unpad(convex_upsample(disp.float(), mask.float(), 4)))
        if not predictions:  # iters == 0: the initial estimate is the answer
            predictions.append(outputs["init_disparity"])
        outputs["disparity"] = predictions[-1]
        if return_all:
            outputs["disparities"] = predictions
        return outputs


def build_model(model_cfg: dict) -> StereoModel:
    return StereoModel(**model_cfg)


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
