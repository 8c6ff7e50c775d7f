"""Train the VanillaVAE in one process (one GPU, or the CPU): the DDP script's code without a process group.

    python vae_latent/train_single_gpu.py --config vae_latent/config_vae_sthv2.yaml [--set key.sub=value]
        [--resume auto|PATH]
"""
from vae_latent.training import main

if __name__ == "__main__":
    main(allow_distributed=False, description="Train the VanillaVAE in a single process")
