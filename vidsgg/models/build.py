"""Build the model named by -model from the parsed flags and the backbone's feature sizes."""
from __future__ import annotations

import argparse
import logging

import torch

from vidsgg.data.classes import default_class_lists
from vidsgg.features.word_vectors import load_glove, parse_word_vectors
from vidsgg.models.sttran import STTran, STTranConfig
from vidsgg.models.tempura import TEMPURA, TempuraConfig
from vidsgg.options import MODEL_FLAGS

log = logging.getLogger(__name__)


def word_table(args: argparse.Namespace) -> torch.Tensor | None:
    """GloVe vectors for the 37 class names when -word_vectors glove:PATH is given, else None (learned)."""
    path = parse_word_vectors(args.word_vectors)
    if path is None:
        log.info("Class-name embeddings: learned (no -word_vectors given).")
        return None
    log.info("Class-name embeddings: GloVe from %s", path)
    return load_glove(path, default_class_lists().objects, args.embed_dim)


def sttran_config(args: argparse.Namespace, feature_dim: int, union_channels: int) -> STTranConfig:
    return STTranConfig(mode=args.mode, feature_dim=feature_dim, union_channels=union_channels,
                        proj_dim=args.proj_dim, embed_dim=args.embed_dim, union_dim=args.union_dim,
                        bn_momentum=args.bn_momentum, heads=args.num_heads,
                        ffn_dim=args.hidden_dim, spatial_layers=args.spatial_layer,
                        temporal_layers=args.temporal_layer, window=args.window)


def model_flags(args: argparse.Namespace, model: str) -> dict:
    """The model-specific flags that were given (None = not given: the config's default applies)."""
    return {f: getattr(args, f) for f in MODEL_FLAGS.get(model, ()) if getattr(args, f) is not None}


def build_model(args: argparse.Namespace, feature_dim: int, union_channels: int,
                words: torch.Tensor | None = None, train_set=None) -> torch.nn.Module:
    """The model of -model (and -dataset). `train_set` is the training dataset, which STKET needs to compute its
    priors when the prior file is missing (None on the meta device: zero priors of the right shape)."""
    base = sttran_config(args, feature_dim, union_channels)
    if args.dataset == "easg":
        from vidsgg.easg.model import build_easg_model
        return build_easg_model(args, feature_dim, union_channels, words)
    if args.model == "sttran":
        return STTran(base, words)
    if args.model == "tempura":
        return TEMPURA(TempuraConfig(**vars(base), **model_flags(args, "tempura")), words)
    if args.model == "stket":
        from vidsgg.models.stket import build_stket
        return build_stket(args, base, words, train_set)
    if args.model == "scenellm":
        from vidsgg.models.scenellm import build_scenellm
        return build_scenellm(args, base, words)
    raise ValueError(f"Unknown -model {args.model!r}")


def model_from_checkpoint(state: dict) -> torch.nn.Module:
    """Rebuild the model a checkpoint was trained with (its saved config) and load its weights."""
    name, config = state["model_name"], state["model_config"]
    if state.get("config", {}).get("dataset") == "easg":
        from vidsgg.easg.model import easg_model_from_config
        model = easg_model_from_config(config)
    elif name == "sttran":
        model = STTran(STTranConfig(**config))
    elif name == "tempura":
        model = TEMPURA(TempuraConfig(**config))
    elif name == "stket":
        from vidsgg.models.stket import STKET
        model = STKET.from_config(config)
    elif name == "scenellm":
        from vidsgg.models.scenellm import SceneLLM
        model = SceneLLM.from_config(config)
    else:
        raise ValueError(f"Checkpoint holds an unknown model {name!r}")
    model.load_state_dict(state["model"])
    return model
