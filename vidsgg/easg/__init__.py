"""EASG (Egocentric Action Scene Graphs, Rodin et al., CVPR 2024): dataset, synthetic generator, entries, the
STTran variant for fine-tuning from an Action Genome checkpoint, the reference recall@K, and the task hooks
train.py / test.py call for `-dataset easg`."""
