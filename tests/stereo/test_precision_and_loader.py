"""bf16 on CPU computes 3D convolutions in fp32 (also in deep copies such as the EMA); creating a DataLoader
iterator with the loader's own generator leaves the global torch RNG untouched."""
import copy

import torch
from torch.utils.data import DataLoader

from common.seed import loader_generator
from stereo.train.precision import conv3d_in_fp32_on_cpu


def test_3d_convolutions_run_in_fp32_under_cpu_autocast_and_2d_ones_in_bf16():
    model = torch.nn.ModuleDict({"conv2d": torch.nn.Conv2d(3, 4, 3, padding=1),
                                 "conv3d": torch.nn.Conv3d(4, 4, 3, padding=1),
                                 "deconv3d": torch.nn.ConvTranspose3d(4, 2, 4, stride=2, padding=1)})
    keys = list(model.state_dict())
    assert conv3d_in_fp32_on_cpu(model) == 2
    assert list(model.state_dict()) == keys  # checkpoints still load
    x = torch.randn(1, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        flat = model["conv2d"](x)
        volume = model["deconv3d"](model["conv3d"](flat[:, :, None].expand(-1, -1, 4, -1, -1)))
    assert flat.dtype == torch.bfloat16 and volume.dtype == torch.float32
    volume.square().mean().backward()
    assert model["conv3d"].weight.grad.dtype == torch.float32 and model["conv3d"].weight.grad.isfinite().all()
    # A deep copy (AveragedModel) computes with its own weights, in fp32 too.
    twin = copy.deepcopy(model)
    torch.nn.init.zeros_(twin["conv3d"].weight)
    torch.nn.init.zeros_(twin["conv3d"].bias)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = twin["conv3d"](flat[:, :, None].expand(-1, -1, 4, -1, -1))
    assert out.dtype == torch.float32 and float(out.abs().max()) == 0.0


def test_creating_the_iterator_leaves_the_global_torch_rng_alone():
    dataset = list(range(8))
    torch.manual_seed(0)
    before = torch.get_rng_state()
    iter(DataLoader(dataset, batch_size=2, generator=loader_generator(0)))
    assert torch.equal(before, torch.get_rng_state())
    iter(DataLoader(dataset, batch_size=2))  # without its own generator the loader draws from the global RNG
    assert not torch.equal(before, torch.get_rng_state())
