"""The cheap reconstructions a VAE must beat, fitted on training frames: the mean training image, and PCA with as
many components as the VAE has latent dimensions (the best *linear* code of the same size).

Both work on [0, 1] images (B, C, H, W) and return reconstructions of the same shape in [0, 1], so every row of a
comparison is scored by the same metric code.
"""
from __future__ import annotations

import logging
import random
from typing import Sequence

import torch

from common.data import BadSampleError, image_to_tensor, read_image

log = logging.getLogger(__name__)


class MeanImage:
    """Predicts every image by the mean training image (the best constant prediction under MSE)."""

    name = "mean_image"

    def __init__(self, mean: torch.Tensor):
        self.mean = mean  # (C, H, W) in [0, 1]

    @classmethod
    def fit(cls, images: torch.Tensor) -> "MeanImage":
        """images: (N, C, H, W) in [0, 1]."""
        return cls(images.double().mean(dim=0).float())

    def to(self, device: torch.device) -> "MeanImage":
        return MeanImage(self.mean.to(device))

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        return self.mean.to(images.device).expand_as(images).clone()


class PCA:
    """Projection on the top-k principal components of the training images (exact, by SVD of the centred data).

    With N training images there are at most N - 1 components; `components` holds min(k, N - 1) of them.
    """

    name = "pca"

    def __init__(self, mean: torch.Tensor, components: torch.Tensor):
        self.mean = mean              # (D,) with D = C * H * W
        self.components = components  # (k, D), orthonormal rows

    @classmethod
    def fit(cls, images: torch.Tensor, k: int) -> "PCA":
        """images: (N, C, H, W) in [0, 1]; k: number of components (the VAE's latent_dim)."""
        flat = images.flatten(1).float()
        mean = flat.double().mean(dim=0).float()
        rank = min(k, flat.shape[0] - 1)
        if rank < 1:
            raise ValueError(f"PCA needs at least 2 training images, got {flat.shape[0]}")
        # Thin SVD of the centred data: the rows of Vh are the principal directions, by decreasing variance.
        # (float32: at 256 px, 1,024 frames already make a 0.8 GB matrix.)
        _, _, vh = torch.linalg.svd(flat - mean, full_matrices=False)
        return cls(mean, vh[:rank].contiguous())

    @property
    def k(self) -> int:
        return self.components.shape[0]

    def to(self, device: torch.device) -> "PCA":
        return PCA(self.mean.to(device), self.components.to(device))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, k) coordinates along the components."""
        return (images.flatten(1).float() - self.mean) @ self.components.T

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        codes = self.encode(images)
        return (codes @ self.components + self.mean).view_as(images).clamp(0.0, 1.0)


def sample_frames(frame_lists: Sequence[Sequence], max_frames: int, seed: int) -> list:
    """Up to `max_frames` frame paths drawn without replacement from all frames of all videos (deterministic)."""
    every = [path for frames in frame_lists for path in frames]
    if len(every) <= max_frames:
        return every
    return [every[i] for i in sorted(random.Random(seed).sample(range(len(every)), max_frames))]


def load_frames(paths: Sequence, image_size: int) -> torch.Tensor:
    """(N, 3, S, S) in [0, 1] from image files; unreadable files are skipped and counted in a warning."""
    images, bad = [], 0
    for path in paths:
        try:
            images.append(image_to_tensor(read_image(path, image_size)))
        except BadSampleError as error:
            bad += 1
            log.warning("Baseline fit: skipping %s (%s)", path, error)
    if bad:
        log.warning("Baseline fit: %d of %d frames were unreadable and skipped.", bad, len(paths))
    if not images:
        raise BadSampleError(f"None of the {len(paths)} frames chosen to fit the baselines could be read")
    return torch.stack(images)


def fit_baselines(frame_lists: Sequence[Sequence], image_size: int, k: int, max_frames: int,
                  seed: int) -> dict[str, MeanImage | PCA]:
    """{"pca": PCA with k components, "mean_image": MeanImage} fitted on up to `max_frames` training frames
    (frame_lists: the frame paths of each training video)."""
    images = load_frames(sample_frames(frame_lists, max_frames, seed), image_size)
    pca = PCA.fit(images, k)
    if pca.k < k:
        log.warning("PCA baseline has %d components, not %d: only %d training frames were used to fit it.",
                    pca.k, k, images.shape[0])
    return {"pca": pca, "mean_image": MeanImage.fit(images)}
