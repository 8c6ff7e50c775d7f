"""FoundationStereo (Wen et al., CVPR 2025), written for this project; parameter names are those of the reference
(NVlabs/FoundationStereo, core/foundation_stereo.py), so its released state dict loads key for key.

    features   Side-Tuning Adapter (stereo.core.features.Feature): EdgeNeXt-S + frozen DepthAnything-V2 at 1/4
    volume     8-group cosine correlation + concatenation of 12-channel projections, D = max_disp/4 bins
    filtering  3D stem (28 ch) + feature attention, AHCF hourglass with the Disparity Transformer (cost_agg)
    d0         softmax over D of the classifier's logits, soft-argmin
    context    ContextNet -> GRU hidden (tanh) and context (ReLU, channel attention CAM); SAM maps
    refinement Selective ConvGRUs at 1/16, 1/8, 1/4 reading the geometry + cosine lookup (stereo.core.geometry)
    upsampling 9-neighbour softmax weights from the 1/4 mask features and the 1/2-resolution `stem_2` features

Precision: with `mixed_precision` the model autocasts to fp16 on CUDA in the reference's places. The 3D cost
filtering always runs in fp32 on the CPU, whatever autocast the caller set: CPU bf16 Conv3d gives non-finite
weight gradients.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from stereo.core.attention import ChannelAttention, FeatureAttention, SpatialAttention
from stereo.core.cost_volume import concat_volume, disparity_regression, group_correlation_volume
from stereo.core.depth_anything import feature_channels
from stereo.core.features import ContextNet, Feature
from stereo.core.geometry import GeoEncodingLookup
from stereo.core.hourglass import Hourglass
from stereo.core.layers import BasicBlock, ConvNormAct, UpConcat
from stereo.core.model_config import check_model_config
from stereo.core.update import SelectiveUpdateBlock
from stereo.core.upsample import InputPadder, context_upsample

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VOLUME_DIM = 28    # channels of the filtered cost volume
CV_GROUPS = 8      # group-wise correlation groups
CONCAT_DIM = 12    # projected channels per view in the concatenation volume


def _stem(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(ConvNormAct(in_channels, out_channels, norm="instance", kernel_size=3, stride=2, padding=1),
                         nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False),
                         nn.InstanceNorm2d(out_channels), nn.ReLU())


class FoundationStereo(nn.Module):
    """forward(left, right, iters=None, test_mode=False) with (B, 3, H, W) RGB images in 0-255 (float), any H, W
    (padded to ×32 inside as the reference demo's InputPadder, cropped back):

    test_mode=True   -> (B, 1, H, W) disparity after `iters` GRU iterations (default: valid_iters);
    test_mode=False  -> dict for the training loss (default iters: train_iters in training mode):
        "disparities"            list of (B, 1, H, W), one per iteration;
        "disparity"              the last of them;
        "init_disparity"         (B, 1, H, W): d0 bilinearly upsampled ×4 (values ×4, align_corners=True);
        "init_disparity_quarter" (B, 1, H_pad/4, W_pad/4): d0 itself, in 1/4-res px (the reference's init_disp).

    Disparity is positive, in px: x_right = x_left - d. `gradient_checkpointing = True` recomputes each GRU
    iteration in backward.
    """

    def __init__(self, cfg: dict):
        super().__init__()
        cfg = check_model_config(cfg)
        self.cfg = cfg
        self.gradient_checkpointing = False
        hidden = cfg["hidden_dims"][0]
        self.feature = Feature(cfg["vit_size"])
        self.proj_cmb = nn.Conv2d(self.feature.d_out[0], CONCAT_DIM, 1)
        self.stem_2 = _stem(3, 32)
        self.stem_4 = _stem(32, 48)  # unused by the reference's forward; kept so its checkpoints load strictly
        self.spx_2_gru = UpConcat(32, 32, instance=False)
        self.spx_gru = nn.Sequential(nn.ConvTranspose2d(2 * 32, 9, kernel_size=4, stride=2, padding=1))
        self.corr_stem = nn.Sequential(nn.Conv3d(CV_GROUPS + 2 * CONCAT_DIM, VOLUME_DIM, 1),
                                       ConvNormAct(VOLUME_DIM, VOLUME_DIM, dims=3, kernel_size=3, padding=1),
                                       BasicBlock(VOLUME_DIM, dims=3), BasicBlock(VOLUME_DIM, dims=3))
        self.corr_feature_att = FeatureAttention(VOLUME_DIM, self.feature.d_out[0])
        self.cost_agg = Hourglass(VOLUME_DIM, self.feature.d_out, cfg["max_disp"], cfg["attend_over"])
        self.classifier = nn.Sequential(ConvNormAct(VOLUME_DIM, VOLUME_DIM // 2, dims=3, kernel_size=3, padding=1),
                                        BasicBlock(VOLUME_DIM // 2, dims=3),
                                        nn.Conv3d(VOLUME_DIM // 2, 1, kernel_size=7, padding=3))
        self.cnet = ContextNet(hidden, feature_channels(cfg["vit_size"]))
        corr_channels = cfg["corr_levels"] * (2 * cfg["corr_radius"] + 1) * (VOLUME_DIM + 1)
        self.update_block = SelectiveUpdateBlock(corr_channels, hidden, cfg["n_gru_layers"])
        self.sam = SpatialAttention()
        self.cam = ChannelAttention(hidden)
        # Defined but never used by the reference's forward; kept so its checkpoints load strictly.
        self.context_zqr_convs = nn.ModuleList(nn.Conv2d(hidden, 3 * hidden, 3, padding=1)
                                               for _ in range(cfg["n_gru_layers"]))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    # ------------------------------------------------------------------ precision
    def _autocast(self, device: torch.device):
        """The reference's torch.cuda.amp.autocast(enabled=mixed_precision): fp16 on CUDA when asked; otherwise
        the caller's autocast (if any) stays in force."""
        if self.cfg["mixed_precision"] and device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    @staticmethod
    def _filtering_precision(volume: torch.Tensor):
        """fp32 for the 3D cost filtering on the CPU (CPU bf16 Conv3d weight gradients are not finite)."""
        if volume.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            return torch.autocast("cpu", enabled=False)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ parts
    def _filter_volume(self, volume: torch.Tensor, features_left: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Combined volume (B, 32, D, h, w) -> (filtered volume (B, 28, D, h, w), d0 (B, 1, h, w))."""
        with self._filtering_precision(volume):
            if volume.device.type == "cpu" and volume.dtype != torch.float32:
                volume, features_left = volume.float(), [f.float() for f in features_left]
            volume = self.corr_stem(volume)
            volume = self.corr_feature_att(volume, features_left[0])
            volume = self.cost_agg(volume, features_left)
            prob = F.softmax(self.classifier(volume).squeeze(1), dim=1)
        return volume, disparity_regression(prob)

    def upsample_disp(self, disp: torch.Tensor, mask_features: torch.Tensor, stem_2x: torch.Tensor) -> torch.Tensor:
        """(B, 1, h, w) 1/4-res disparity -> (B, 1, 4h, 4w) full-res px, weights from mask features and stem_2."""
        with self._autocast(disp.device):
            weights = F.softmax(self.spx_gru(self.spx_2_gru(mask_features, stem_2x)), dim=1)
            up = context_upsample(disp * 4.0, weights)
        return up.float()

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return (images / 255.0 - self.mean) / self.std

    # ------------------------------------------------------------------ forward
    def forward(self, left: torch.Tensor, right: torch.Tensor, iters: int | None = None, test_mode: bool = False):
        if iters is None:
            iters = self.cfg["train_iters"] if self.training and not test_mode else self.cfg["valid_iters"]
        if iters < 1:
            raise ValueError(f"iters must be at least 1, got {iters}")
        padder = InputPadder(left.shape, 32)
        left, right = padder.pad_images(self.normalize(left), self.normalize(right))
        batch, num_disp = left.shape[0], self.cfg["max_disp"] // 4

        with self._autocast(left.device):
            features, vit_feature = self.feature(torch.cat([left, right], dim=0))
            features_left = [f[:batch] for f in features]
            features_right = [f[batch:] for f in features]
            stem_2x = self.stem_2(left)
            volume = torch.cat([
                group_correlation_volume(features_left[0], features_right[0], num_disp, CV_GROUPS),
                concat_volume(self.proj_cmb(features_left[0]), self.proj_cmb(features_right[0]), num_disp)], dim=1)
            volume, init_disp = self._filter_volume(volume, features_left)

            hidden, context = [], []
            for hidden_map, context_map in self.cnet(left, vit_feature[:batch]):
                hidden.append(torch.tanh(hidden_map))
                context_map = torch.relu(context_map)
                context.append(self.cam(context_map) * context_map)
            att = [self.sam(x) for x in context]

        lookup = GeoEncodingLookup(features_left[0].float(), features_right[0].float(), volume.float(),
                                   self.cfg["corr_levels"], self.cfg["corr_radius"],
                                   self.cfg["correlation_implementation"])

        def iteration(disp_in: torch.Tensor, *hidden_in: torch.Tensor):
            with self._autocast(disp_in.device):
                hidden_out, mask_features, delta = self.update_block(list(hidden_in), context, lookup(disp_in),
                                                                     disp_in, att)
            return (disp_in + delta.float(), mask_features, *hidden_out)

        disp = init_disp.float()
        predictions = []
        for index in range(iters):
            disp = disp.detach()  # each iteration learns its own residual: no gradient through the chain (RAFT)
            if self.gradient_checkpointing and torch.is_grad_enabled():
                # The GRU activations of all iterations dominate training memory; recompute them in backward.
                disp, mask_features, *hidden = checkpoint(iteration, disp, *hidden, use_reentrant=False)
            else:
                disp, mask_features, *hidden = iteration(disp, *hidden)
            if test_mode and index < iters - 1:
                continue
            predictions.append(padder.unpad(self.upsample_disp(disp.float(), mask_features.float(), stem_2x.float())))

        if test_mode:
            return predictions[-1]
        init_up = 4.0 * F.interpolate(init_disp.float(), scale_factor=4, mode="bilinear", align_corners=True)
        return {"disparities": predictions, "disparity": predictions[-1], "init_disparity": padder.unpad(init_up),
                "init_disparity_quarter": init_disp}
