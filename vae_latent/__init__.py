"""vae_latent: a VanillaVAE baseline on Something-Something v2 frames (the same frames LAQ trains on), with DDP
training, TensorBoard logging, and a comparison of its continuous latent with LAQ's discrete latent actions.

Guide: vae_latent/README.md (quick start: vae_latent/QUICKSTART.md).
"""
