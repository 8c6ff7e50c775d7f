"""Train the VanillaVAE on every visible GPU (one process each, DDP), or in one process on the CPU.

    python vae_latent/train_ddp.py --config vae_latent/config_vae_sthv2.yaml [--set key.sub=value] [--resume auto]
    torchrun --nproc_per_node=N vae_latent/train_ddp.py --config vae_latent/config_vae_sthv2.yaml

Started without torchrun, it counts the GPUs (`trainer_params.gpus`: -1 all, N, 0 CPU) and, for two or more,
re-launches itself through torchrun's API (vae_latent/launch.py). The run itself lives in vae_latent/training.py.
"""
import sys

import torch
from torch.distributed.elastic.multiprocessing.errors import record

from vae_latent.launch import processes_to_launch, relaunch, started_by_launcher
from vae_latent.training import main, parse_args
from vae_latent.vae_config import load_config

DESCRIPTION = "Train the VanillaVAE with DDP on every visible GPU (or torchrun), or in one process"


@record
def entry(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv, DESCRIPTION)
    gpus = load_config(args.config, args.overrides)["trainer_params"]["gpus"]
    nproc = processes_to_launch(gpus, torch.cuda.device_count(), started_by_launcher())
    if nproc > 1:
        print(f"trainer_params.gpus={gpus}: starting {nproc} training processes, one per GPU "
              f"(as torchrun --standalone --nproc_per_node={nproc})", flush=True)
        relaunch(nproc, __file__, argv)
        return
    main(argv, description=DESCRIPTION)


if __name__ == "__main__":
    entry()
