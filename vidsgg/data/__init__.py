"""Action Genome reading: class lists with the reference code's name fixes, and the per-video dataset."""
