import math

import numpy as np
import pytest
import torch

from common.metrics import mse, psnr, ssim
from common.viz import colorize, image_grid, save_png, to_uint8


def test_psnr_matches_the_formula_per_image():
    target = torch.zeros(2, 3, 8, 8)
    pred = target.clone()
    pred[0] += 0.1
    pred[1] += 0.01
    values = psnr(pred, target, data_range=1.0)
    assert values.shape == (2,)
    assert values[0].item() == pytest.approx(20.0, abs=1e-4)
    assert values[1].item() == pytest.approx(40.0, abs=1e-3)
    assert psnr(pred * 2, target, data_range=2.0)[0].item() == pytest.approx(20.0, abs=1e-4)
    assert mse(pred, target)[0].item() == pytest.approx(0.01)


def test_ssim_is_one_for_identical_and_lower_for_noisy_images():
    torch.manual_seed(0)
    image = torch.rand(2, 3, 32, 32)
    assert torch.allclose(ssim(image, image, data_range=1.0), torch.ones(2), atol=1e-5)
    noisy = (image + 0.2 * torch.randn_like(image)).clamp(0, 1)
    assert (ssim(noisy, image, data_range=1.0) < 0.9).all()


def test_to_uint8_and_grid_shapes():
    chw = torch.ones(3, 4, 5) * 0.5
    assert to_uint8(chw).shape == (4, 5, 3) and to_uint8(chw)[0, 0, 0] == 128
    assert to_uint8(torch.zeros(4, 5) - 1, value_range=(-1, 1))[0, 0, 0] == 0
    grid = image_grid([[np.zeros((4, 5, 3), np.uint8)] * 3, [np.zeros((4, 5, 3), np.uint8)]], pad=1)
    assert grid.shape == (2 * 5 + 1, 3 * 6 + 1, 3)


def test_grid_places_each_image_in_its_cell_and_pads_the_rest():
    red, small = np.zeros((4, 5, 3), np.uint8), np.zeros((2, 3, 3), np.uint8)
    red[..., 0] = 200
    small[..., 1] = 100
    grid = image_grid([[red, red], [small]], pad=1, pad_value=7)
    assert grid.shape == (2 * 5 + 1, 2 * 6 + 1, 3) and grid.dtype == np.uint8
    assert (grid[1:5, 7:12] == red).all()                   # row 0, column 1
    assert (grid[6:8, 1:4] == small).all()                  # row 1, column 0, top left of its cell
    assert (grid[8:10, 1:6] == 7).all() and (grid[6:10, 4:6] == 7).all()  # the rest of that cell
    assert (grid[6:10, 7:12] == 7).all()                    # the missing cell of the short row
    assert (grid[0] == 7).all() and (grid[:, 6] == 7).all()  # border and gap between columns
    single = image_grid([[red]], pad=2, pad_value=7)
    assert single.shape == (8, 9, 3) and (single[2:6, 2:7] == red).all() and (single[:2] == 7).all()


def test_colorize_maps_range_and_blacks_out_invalid(tmp_path):
    values = np.array([[0.0, 1.0], [math.inf, 0.5]], np.float32)
    rgb = colorize(values, vmin=0, vmax=1)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert rgb[1, 0].tolist() == [0, 0, 0]
    assert rgb[0, 0].tolist() != rgb[0, 1].tolist()
    save_png(tmp_path / "c.png", rgb)
    assert (tmp_path / "c.png").stat().st_size > 0
