"""Command-line helpers shared by the argparse-based entry points (stereo, vidsgg, shadow, vae_latent)."""
from __future__ import annotations

import argparse

TRUE_WORDS = ("true", "1", "yes", "y", "on")
FALSE_WORDS = ("false", "0", "no", "n", "off")


def str2bool(value: str | bool) -> bool:
    """argparse `type=` for boolean flags written `--flag true` / `-flag False` (also 1/0, yes/no, y/n, on/off,
    any case). Anything else is an argparse error that shows the value: `expected true or false, got 'maybe'`."""
    if isinstance(value, bool):
        return value
    lowered = str(value).strip().lower()
    if lowered in TRUE_WORDS:
        return True
    if lowered in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")
