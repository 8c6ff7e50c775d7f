"""Models: STTran and its building blocks (pair features, transformer layers, object classifier, losses)."""
