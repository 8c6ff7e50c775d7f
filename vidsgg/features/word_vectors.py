"""Class-name embeddings: GloVe vectors read from a local text file, or a learned table.

`-word_vectors glove:PATH` reads a GloVe text file ("word v1 v2 ..." per line); a multi-word class name
("cup/glass/bottle", "closet/cabinet") gets the mean of its words' vectors, as the reference; a name with no
known word keeps a zero vector and is logged. Without the flag the embedding is learned from a random init.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def parse_word_vectors(spec: str | None) -> Path | None:
    """'glove:PATH' -> Path; None/''/'learned' -> None; anything else is an error naming the flag."""
    if spec in (None, "", "learned", "none"):
        return None
    if not spec.startswith("glove:"):
        raise ValueError(f"-word_vectors must be 'glove:PATH' or 'learned', got {spec!r}")
    path = Path(spec[len("glove:"):])
    if not path.is_file():
        raise FileNotFoundError(f"-word_vectors: GloVe file not found: {path}")
    return path


def load_glove(path: str | Path, names: list[str] | tuple[str, ...], dim: int) -> torch.Tensor:
    """(len(names), dim) float32 vectors for the class names from a GloVe text file."""
    words = {w for name in names for w in re.split(r"[/_ ]", name) if w}
    found: dict[str, torch.Tensor] = {}
    with open(path, encoding="utf8") as handle:
        for line_no, line in enumerate(handle, 1):
            word, _, rest = line.partition(" ")
            if word in words:
                values = [float(v) for v in rest.split()]
                if len(values) != dim:
                    raise ValueError(f"{path}:{line_no}: vector for {word!r} has {len(values)} values, "
                                     f"expected {dim} (set -embed_dim to the file's dimension)")
                found[word] = torch.tensor(values)
    table = torch.zeros(len(names), dim)
    for i, name in enumerate(names):
        vectors = [found[w] for w in re.split(r"[/_ ]", name) if w in found]
        if vectors:
            table[i] = torch.stack(vectors).mean(0)
        elif name != "__background__":
            log.warning("No GloVe vector for class %r in %s; it keeps a zero vector.", name, path)
    return table
