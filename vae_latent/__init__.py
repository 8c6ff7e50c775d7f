"""vae_latent (placeholder until its issue lands)."""
