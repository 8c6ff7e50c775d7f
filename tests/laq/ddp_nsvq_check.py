"""Two-rank check used by test_laq_nsvq_ddp.py: every rank sees different data and a different RNG stream, the
quantiser replaces dead codes at every step, and at the end every rank must hold the same weights and codebook.

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/laq/ddp_nsvq_check.py OUT_DIR
"""
import sys
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from common import dist
from laq.models import LAQConfig, LatentActionQuantization

TINY = dict(image_size=32, patch_size=4, dim=32, heads=2, dim_head=16, spatial_depth=1, temporal_depth=1,
            codebook_size=8, code_seq_len=4, quant_dim=8)


def main() -> None:
    out_dir = Path(sys.argv[1])
    torch.set_num_threads(1)
    info = dist.setup(device="cpu")
    torch.manual_seed(0)  # identical initial weights on both ranks
    model = LatentActionQuantization(LAQConfig(**TINY))
    with torch.no_grad():
        model.vq.codebooks[1:] = 50.0  # seven identical codes that no input picks: they must be replaced
    ddp_model = DDP(model, broadcast_buffers=False)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    data = torch.Generator().manual_seed(100 + info.rank)  # different data per rank
    torch.manual_seed(1000 + info.rank)  # different NSVQ noise and replacement draws per rank
    replaced = []
    for _ in range(3):
        first, future = torch.rand(4, 3, 32, 32, generator=data), torch.rand(4, 3, 32, 32, generator=data)
        out = ddp_model(first, future)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        replaced.append(model.vq.replace_dead_codes())
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"state": model.state_dict(), "replaced": replaced}, out_dir / f"rank{info.rank}.pt")
    dist.cleanup()


if __name__ == "__main__":
    main()
