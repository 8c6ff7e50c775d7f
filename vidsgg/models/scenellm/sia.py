"""Spatial information aggregation (SIA): the object tokens of a frame → one scene token per frame.

Node of object i: quantized VQ-VAE latent q_i (D) + box MLP of its geometry (box_context, 9 → D).
Hierarchical clustering: single-linkage agglomerative clustering of the box centres (coordinates normalised by
the image size). Its dendrogram is encoded by the cophenetic distance c_ij (the merge height at which i and j
join one cluster), computed for every frame at once as the minimax-path closure of the centre distances.
Two GCN layers (residual, ReLU, row-normalised adjacency with self-loops) run over it:
    layer 1 within the clusters of the dendrogram cut at CLUSTER_CUT (c_ij ≤ cut; an equivalence relation,
            because c is an ultrametric),
    layer 2 across clusters with soft weights exp(−c_ij / SOFT_SCALE).
The frame token is the LayerNorm of the mean over the frame's nodes.
"""
from __future__ import annotations

import torch
from torch import nn

from vidsgg.models.layers import group_slots
from vidsgg.models.pair_features import box_context

CLUSTER_CUT = 0.25   # dendrogram cut, in image-normalised centre distance
SOFT_SCALE = 0.25    # length scale of the across-cluster weights


def cophenetic_distance(distance: torch.Tensor) -> torch.Tensor:
    """(F, L, L) symmetric distances (inf to padding) -> (F, L, L) single-linkage merge heights: the smallest
    over paths of the largest step (minimax path), by repeated squaring in the (min, max) semiring."""
    merged = distance
    for _ in range(max(1, (distance.shape[-1] - 1).bit_length())):
        via = torch.maximum(merged[:, :, :, None], merged[:, None, :, :]).amin(dim=2)  # min_k max(d_ik, d_kj)
        merged = torch.minimum(merged, via)
    return merged


def normalise_rows(adjacency: torch.Tensor) -> torch.Tensor:
    return adjacency / adjacency.sum(-1, keepdim=True).clamp_min(1e-12)


class SceneAggregator(nn.Module):
    """forward(quantized (N,D), boxes (N,5) [frame,x1,y1,x2,y2] px sorted by frame, image_wh) ->
    tokens (T, D) for frames 0..T-1 (T = last frame + 1; a frame without boxes gets the LayerNorm of zeros)."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.box_mlp = nn.Sequential(nn.Linear(9, latent_dim), nn.ReLU(inplace=True), nn.Linear(latent_dim, latent_dim))
        self.gcn = nn.ModuleList(nn.Linear(latent_dim, latent_dim) for _ in range(2))
        self.norm = nn.LayerNorm(latent_dim)

    def forward(self, quantized: torch.Tensor, boxes: torch.Tensor, image_wh) -> torch.Tensor:
        frame_of = boxes[:, 0].long()
        frames = torch.unique(frame_of)
        index, pad = group_slots(frame_of, frames)             # (F, L)
        context = box_context(boxes[:, 1:], image_wh)
        nodes = (quantized + self.box_mlp(context))[index]     # (F, L, D)
        centre = context[:, 4:6][index]
        valid = ~pad
        both = valid[:, :, None] & valid[:, None, :]
        distance = torch.cdist(centre, centre).masked_fill(~both, float("inf"))
        distance = distance.masked_fill(torch.eye(pad.shape[1], dtype=torch.bool, device=pad.device)[None], 0.0)
        merge = cophenetic_distance(distance)
        within = normalise_rows(((merge <= CLUSTER_CUT) & both).to(nodes.dtype))
        across = normalise_rows(torch.exp(-merge / SOFT_SCALE).masked_fill(~both, 0.0).to(nodes.dtype))
        for layer, adjacency in zip(self.gcn, (within, across)):
            nodes = nodes + torch.relu(layer(adjacency @ nodes))
        pooled = (nodes * valid[:, :, None]).sum(1) / valid.sum(1, keepdim=True).clamp_min(1)
        tokens = pooled.new_zeros(int(frame_of.max()) + 1 if len(frame_of) else 0, pooled.shape[1])
        tokens[frames] = pooled
        return self.norm(tokens)
