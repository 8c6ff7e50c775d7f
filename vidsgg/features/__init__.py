"""Frozen-backbone features (ResNet + RoIAlign), union-box features, spatial masks, word vectors, and the
on-disk per-video feature cache."""
