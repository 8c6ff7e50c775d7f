"""Image grids (torchvision's make_grid) and colour maps (OpenCV) for TensorBoard and PNG outputs."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch
from torchvision.utils import make_grid

COLORMAPS = {"turbo": cv2.COLORMAP_TURBO, "inferno": cv2.COLORMAP_INFERNO, "magma": cv2.COLORMAP_MAGMA,
             "jet": cv2.COLORMAP_JET, "viridis": cv2.COLORMAP_VIRIDIS}


def to_uint8(image: torch.Tensor | np.ndarray, value_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """(3,H,W) or (H,W,3) or (H,W) tensor/array in `value_range` -> (H,W,3) uint8."""
    array = image.detach().float().cpu().numpy() if torch.is_tensor(image) else np.asarray(image, dtype=np.float32)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = array.transpose(1, 2, 0)
    if array.ndim == 2:
        array = array[..., None]
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    low, high = value_range
    array = (array - low) / (high - low)
    return (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def colorize(values: torch.Tensor | np.ndarray, vmin: float | None = None, vmax: float | None = None,
             colormap: str = "turbo") -> np.ndarray:
    """(H,W) scalar map (disparity, error) -> (H,W,3) uint8 RGB; non-finite values are drawn black."""
    array = values.detach().float().cpu().numpy() if torch.is_tensor(values) else np.asarray(values, np.float32)
    array = np.squeeze(array)
    finite = np.isfinite(array)
    vmin = float(array[finite].min()) if vmin is None and finite.any() else (vmin or 0.0)
    vmax = float(array[finite].max()) if vmax is None and finite.any() else (vmax if vmax is not None else 1.0)
    scaled = np.clip((np.where(finite, array, vmin) - vmin) / max(vmax - vmin, 1e-12), 0, 1)
    bgr = cv2.applyColorMap((scaled * 255).astype(np.uint8), COLORMAPS[colormap])
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    rgb[~finite] = 0
    return rgb


def image_grid(rows: Sequence[Sequence[np.ndarray]], pad: int = 2, pad_value: int = 255) -> np.ndarray:
    """Tile (H,W,3) uint8 images into one (H',W',3) uint8 grid with torchvision.utils.make_grid.

    rows[i][j] is the image at row i, column j. Rows may differ in length and images in size: each cell is as large
    as the largest image, an image sits at its cell's top left, and the rest of the cell is `pad_value`, like the
    `pad` pixels around and between cells.
    """
    if not rows or not any(rows):
        raise ValueError("image_grid needs at least one image")
    cell_h = max(img.shape[0] for row in rows for img in row)
    cell_w = max(img.shape[1] for row in rows for img in row)
    n_cols = max(len(row) for row in rows)
    blank = np.full((cell_h, cell_w, 3), pad_value, np.uint8)
    cells = [np.pad(row[j], ((0, cell_h - row[j].shape[0]), (0, cell_w - row[j].shape[1]), (0, 0)),
                    constant_values=pad_value) if j < len(row) else blank
             for row in rows for j in range(n_cols)]
    if len(cells) == 1:  # make_grid returns a single image as it is, without the border
        return np.pad(cells[0], ((pad, pad), (pad, pad), (0, 0)), constant_values=pad_value)
    batch = torch.from_numpy(np.stack(cells)).permute(0, 3, 1, 2)  # (N,3,H,W) uint8
    return make_grid(batch, nrow=n_cols, padding=pad, pad_value=pad_value).permute(1, 2, 0).numpy()


def save_png(path, image: np.ndarray) -> None:
    """Write an (H,W,3) RGB uint8 image as PNG; raises OSError naming the path if it cannot be written."""
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"Could not write image {path}")
