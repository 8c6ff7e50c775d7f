"""Train the VanillaVAE on several processes (one per GPU), or on one when started without torchrun.

    torchrun --nproc_per_node=N vae_latent/train_ddp.py --config vae_latent/config_vae_sthv2.yaml [--resume auto]

The loop lives in vae_latent/engine.py; this file only starts it (with per-rank tracebacks under torchrun).
"""
from torch.distributed.elastic.multiprocessing.errors import record

from vae_latent.engine import main


@record
def entry() -> None:
    main(description="Train the VanillaVAE with DDP (torchrun) or in one process")


if __name__ == "__main__":
    entry()
