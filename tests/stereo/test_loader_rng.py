"""Creating a DataLoader iterator with the loader's own generator leaves the global torch RNG untouched. (CPU bf16
with fp32 3D filtering is the model's own: tests/stereo/test_foundation_stereo.py.)"""
import torch
from torch.utils.data import DataLoader

from common.seed import loader_generator


def test_creating_the_iterator_leaves_the_global_torch_rng_alone():
    dataset = list(range(8))
    torch.manual_seed(0)
    before = torch.get_rng_state()
    iter(DataLoader(dataset, batch_size=2, generator=loader_generator(0)))
    assert torch.equal(before, torch.get_rng_state())
    iter(DataLoader(dataset, batch_size=2))  # without its own generator the loader draws from the global RNG
    assert not torch.equal(before, torch.get_rng_state())
