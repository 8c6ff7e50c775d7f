"""vidsgg: video scene graph generation on Action Genome.

Data (`vidsgg.data`), an STTran-compatible evaluator (`vidsgg.evaluation`), frozen-backbone features with an
on-disk cache (`vidsgg.features`), the models (`vidsgg.models`: STTran, ...), and the training/test entry points
`vidsgg/train.py` and `vidsgg/test.py`. See vidsgg/README.md.
"""
