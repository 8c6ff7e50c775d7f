"""Run under torchrun with 2 CPU processes: the synchronised BatchNorm of each rank's half batch must equal a plain
BatchNorm over the whole batch (outputs, input gradients, parameter gradients, running statistics).

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/vae_latent/sync_bn_worker.py OUT_DIR
"""
import json
import sys
from pathlib import Path

import torch
from torch import nn

from common import dist
from vae_latent.sync_bn import AllReduceBatchNorm2d, convert_sync_batchnorm


def main() -> None:
    info = dist.setup("cpu")
    torch.manual_seed(0)
    full = torch.randn(7, 3, 5, 5) * 3 + 2  # odd batch: rank 0 holds 4 samples, rank 1 holds 3
    head = torch.randn(7, 3, 5, 5)  # a fixed linear read-out so the gradients are not trivial
    reference = nn.BatchNorm2d(3)
    with torch.no_grad():
        reference.weight.uniform_(0.5, 1.5)
        reference.bias.uniform_(-1, 1)
    synced = convert_sync_batchnorm(nn.Sequential(nn.BatchNorm2d(3)), torch.device("cpu"))
    synced.load_state_dict({f"0.{k}": v for k, v in reference.state_dict().items()})
    assert isinstance(synced[0], AllReduceBatchNorm2d)

    rows = slice(0, 4) if info.rank == 0 else slice(4, 7)
    full_in = full.clone().requires_grad_()
    reference_out = reference(full_in)
    (reference_out * head).sum().backward()
    local_in = full[rows].clone().requires_grad_()
    local_out = synced(local_in)
    (local_out * head[rows]).sum().backward()
    weight_grad = dist.all_reduce_mean(synced[0].weight.grad) * info.world_size  # DDP would sum these too
    errors = {
        "output": (local_out - reference_out[rows]).abs().max().item(),
        "input_grad": (local_in.grad - full_in.grad[rows]).abs().max().item(),
        "weight_grad": (weight_grad - reference.weight.grad).abs().max().item(),
        "running_mean": (synced[0].running_mean - reference.running_mean).abs().max().item(),
        "running_var": (synced[0].running_var - reference.running_var).abs().max().item(),
    }
    Path(sys.argv[1]).mkdir(parents=True, exist_ok=True)
    (Path(sys.argv[1]) / f"rank{info.rank}.json").write_text(json.dumps(errors))
    dist.cleanup()


if __name__ == "__main__":
    main()
