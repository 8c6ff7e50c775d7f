"""The comparison figure: titled columns of images and error maps, a caption under each cell (its MSE), and a
colour bar for the error maps. Plain OpenCV drawing on uint8 RGB arrays."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from common.viz import colorize, save_png, to_uint8

FONT = cv2.FONT_HERSHEY_SIMPLEX
ERROR_MAX = 0.5  # error maps show mean |prediction - target| over channels, 0 (black end) to 0.5, in [0, 1] units
COLORMAP = "turbo"


@dataclass
class Cell:
    image: np.ndarray   # (H, W, 3) uint8
    caption: str = ""


def show_image(image01: torch.Tensor, size: int) -> np.ndarray:
    """(3, H, W) in [0, 1] -> (size, size, 3) uint8 (nearest-neighbour, so small frames stay crisp)."""
    return to_uint8(torch.nn.functional.interpolate(image01[None].float(), size=(size, size), mode="nearest")[0])


def show_error(pred01: torch.Tensor, target01: torch.Tensor, size: int) -> np.ndarray:
    """Mean absolute error over channels, coloured on [0, ERROR_MAX]: (size, size, 3) uint8."""
    error = (pred01.float() - target01.float()).abs().mean(0)[None, None]
    return colorize(torch.nn.functional.interpolate(error, size=(size, size), mode="nearest")[0, 0], 0.0,
                    ERROR_MAX, COLORMAP)


def _text(canvas: np.ndarray, text: str, left: int, top: int, width: int, height: int, scale: float) -> None:
    """Draw `text` centred in the box (left, top, width, height), shrunk until it fits."""
    while scale > 0.25 and cv2.getTextSize(text, FONT, scale, 1)[0][0] > width - 4:
        scale -= 0.05
    (text_w, text_h), _ = cv2.getTextSize(text, FONT, scale, 1)
    origin = (left + (width - text_w) // 2, top + (height + text_h) // 2)
    cv2.putText(canvas, text, origin, FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)


def colour_bar(height: int, width: int = 16) -> np.ndarray:
    """(height, width, 3) uint8: the error colour map, ERROR_MAX at the top, 0 at the bottom."""
    ramp = np.linspace(ERROR_MAX, 0.0, height, dtype=np.float32)[:, None].repeat(width, axis=1)
    return colorize(ramp, 0.0, ERROR_MAX, COLORMAP)


def comparison_figure(titles: list[str], rows: list[list[Cell]], cell: int, pad: int = 4) -> np.ndarray:
    """A white canvas: the titles over the columns, rows of cells with their captions beneath, and a colour bar
    for the error maps on the right. Every cell image must be (cell, cell, 3)."""
    title_h, caption_h, bar_w, label_w = 22, 16, 16, 56
    n_cols = len(titles)
    grid_w = pad + n_cols * (cell + pad)
    row_h = cell + caption_h + pad
    height = title_h + len(rows) * row_h + pad
    canvas = np.full((height, grid_w + bar_w + label_w + pad, 3), 255, np.uint8)
    for j, title in enumerate(titles):
        _text(canvas, title, pad + j * (cell + pad), 0, cell, title_h, 0.45)
    for i, row in enumerate(rows):
        top = title_h + i * row_h
        for j, entry in enumerate(row):
            left = pad + j * (cell + pad)
            canvas[top:top + cell, left:left + cell] = entry.image
            if entry.caption:
                _text(canvas, entry.caption, left, top + cell, cell, caption_h, 0.38)
    bar_h = max(height - title_h - 2 * pad - caption_h, 32)
    canvas[title_h:title_h + bar_h, grid_w:grid_w + bar_w] = colour_bar(bar_h, bar_w)
    for value, y in ((ERROR_MAX, title_h + 6), (ERROR_MAX / 2, title_h + bar_h // 2), (0.0, title_h + bar_h - 2)):
        cv2.putText(canvas, f"{value:.2f}", (grid_w + bar_w + 3, y + 4), FONT, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    _text(canvas, "|error|", grid_w - 8, title_h + bar_h, bar_w + label_w, caption_h, 0.35)
    return canvas


def save_comparison(path, titles: list[str], rows: list[list[Cell]], cell: int) -> None:
    save_png(path, comparison_figure(titles, rows, cell))
