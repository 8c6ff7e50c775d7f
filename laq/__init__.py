"""LAQ: Latent Action Quantization, stage 1 of LAPA — discrete latent actions learned from pairs of video frames.

Model in `laq.models`, data in `laq.data`, training entry point `laq/scripts/2_train_laq.py` (Hydra),
inference API in `laq.inference` (load_model, predict_next, latent_actions). See laq/README.md.
"""
