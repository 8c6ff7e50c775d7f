"""Entry points: train.py, evaluate.py, demo.py (run as files or with `python -m stereo.scripts.<name>`)."""
