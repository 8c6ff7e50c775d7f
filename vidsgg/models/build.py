"""Build the model named by -model from the parsed flags and the backbone's feature sizes: the only place that
turns flags into model configs (the model modules import nothing from here)."""
from __future__ import annotations

import argparse
import logging
from dataclasses import fields
from pathlib import Path

import torch

from vidsgg.data.classes import default_class_lists
from vidsgg.easg.dataset import read_vocabulary
from vidsgg.easg.model import EASGConfig, EASGSTTran
from vidsgg.features.word_vectors import load_glove, parse_word_vectors
from vidsgg.models.interface import RelationModel
from vidsgg.models.priors import load_or_compute_priors
from vidsgg.models.scenellm import SceneLLM, SceneLLMConfig
from vidsgg.models.stket import STKET, STKETConfig
from vidsgg.models.sttran import STTran, STTranConfig
from vidsgg.models.tempura import TEMPURA, TempuraConfig
from vidsgg.options import MODEL_FLAGS

log = logging.getLogger(__name__)
MODEL_CLASSES = {"sttran": (STTran, STTranConfig), "tempura": (TEMPURA, TempuraConfig),
                 "stket": (STKET, STKETConfig), "scenellm": (SceneLLM, SceneLLMConfig)}


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
                words: torch.Tensor | None = None, train_set=None) -> RelationModel:
    """The model of -model (and -dataset). `train_set` is the training dataset, which STKET needs to compute its
    priors when the prior file is missing (None on the meta device: zero priors of the right shape)."""
    base = sttran_config(args, feature_dim, union_channels)
    if args.dataset == "easg":
        return build_easg(args, base, words)
    if args.model == "sttran":
        return STTran(base, words)
    if args.model == "tempura":
        return TEMPURA(TempuraConfig(**vars(base), **model_flags(args, "tempura")), words)
    if args.model == "stket":
        return build_stket(args, base, words, train_set)
    if args.model == "scenellm":
        known = {f.name for f in fields(SceneLLMConfig)}
        given = {k: v for k, v in model_flags(args, "scenellm").items() if k in known}
        return SceneLLM(SceneLLMConfig(**vars(base), **given, stage=args.scenellm_stage), words)
    raise ValueError(f"Unknown -model {args.model!r}")


def build_stket(args: argparse.Namespace, base: STTranConfig, words: torch.Tensor | None = None,
                train_set=None) -> STKET:
    """STKET from the flags. Priors: -prior_path, else <data_path>/TrainPrior.json, computed when missing; none on
    the meta device (zeros of the right shape) and none when no prior is used."""
    flags = model_flags(args, "stket")
    prior_path = flags.pop("prior_path", None)
    config = STKETConfig(**vars(base), **flags)
    uses_prior = config.use_spatial_prior or config.use_temporal_prior  # flag combinations: option_checks.validate
    if not uses_prior or torch.empty(()).device.type == "meta":
        return STKET(config, words)
    path = Path(prior_path) if prior_path else Path(args.data_path) / "TrainPrior.json"
    return STKET(config, words, load_or_compute_priors(path, train_set, args.data_path, args.datasize, args.mode))


def build_easg(args: argparse.Namespace, base: STTranConfig, words: torch.Tensor | None = None) -> EASGSTTran:
    """The EASG model of the flags; class counts and the verb feature width come from the data at -data_path.
    `words`: the AG (37, embed) GloVe table (subject side); with -word_vectors glove:PATH the EASG object names
    get GloVe vectors from the same file."""
    vocabulary, verb_dim = read_vocabulary(args.data_path)
    config = EASGConfig(**vars(base), num_objects=len(vocabulary.objects), num_verbs=len(vocabulary.verbs),
                        num_edges=len(vocabulary.edges), verb_dim=verb_dim)
    path = parse_word_vectors(args.word_vectors)
    object_words = load_glove(path, vocabulary.objects, args.embed_dim) if path is not None else None
    log.info("EASG STTran (%s): %d objects, %d verbs, %d edges, verb features %d-d", config.mode,
             config.num_objects, config.num_verbs, config.num_edges, verb_dim)
    return EASGSTTran(config, words, object_words)


def model_from_config(name: str, config: dict, dataset: str = "action_genome") -> RelationModel:
    """The model of a saved config (weights not loaded)."""
    if dataset == "easg":
        return EASGSTTran(EASGConfig(**config))
    if name not in MODEL_CLASSES:
        raise ValueError(f"Checkpoint holds an unknown model {name!r}")
    model_class, config_class = MODEL_CLASSES[name]
    known = {f.name for f in fields(config_class)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"{name} config has unknown keys {unknown}")
    return model_class(config_class(**config))


def model_from_checkpoint(state: dict) -> RelationModel:
    """Rebuild the model a checkpoint was trained with (its saved config) and load its weights."""
    model = model_from_config(state["model_name"], state["model_config"],
                              state.get("config", {}).get("dataset", "action_genome"))
    model.load_state_dict(state["model"])
    return model
