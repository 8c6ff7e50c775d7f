"""Load the weights of the reference implementations (their released checkpoints) into the project's models.

    model = build_model(args, 2048, 1024)
    import_reference(torch.load("predcls.tar")["state_dict"], model, detector=faster_rcnn_state)

Key layouts (checked against reference builds, tests/vidsgg/test_vidsgg_reference.py):
    STTran   yrcong/STTran lib/sttran.py                {'state_dict'}
    TEMPURA  sayaknag/unbiasedSGG lib/tempura.py        {'state_dict', 'rel_memory', 'object_memory'}
    STKET    HCPLab-SYSU/STKET lib/stket.py             {'state_dict'}
The references build their object classifier in every mode: in PredCLS its tensors are unused and skipped here
(as are STKET's never-trained pre-encoder heads `{a,s,c}_rel_compress`, the priors of a switched-off prior and
TEMPURA's constant sine table `positional_encoder.pe`). In SGCLS/SGDET the object classifier's class distribution
comes from the detector's classifier `RCNN_cls_score` (Faster R-CNN weights, `detector=`), which the reference
keeps in its detector. Any other unknown key, and any of the model's tensors the file does not provide, is an
error listing them.
"""
from __future__ import annotations

import re

import torch

from vidsgg.models.interface import RelationModel

# (reference pattern, project replacement), applied in order; the first match wins.
_COMMON = [
    (r"union_func1\.", "pair_features.union_conv."),
    (r"conv\.", "pair_features.mask_conv."),
    (r"subj_fc\.", "pair_features.subject_fc."),
    (r"obj_fc\.", "pair_features.object_fc."),
    (r"vr_fc\.", "pair_features.union_fc."),
    (r"obj_embed\.", "pair_features.subject_word."),
    (r"obj_embed2\.", "pair_features.object_word."),
    (r"object_classifier\.obj_embed\.", "object_classifier.word."),
    (r"object_classifier\.pos_embed\.(\d)\.", r"object_classifier.box_mlp.\1."),
    (r"object_classifier\.decoder_lin\.([01])\.", r"object_classifier.hidden.\1."),
    (r"object_classifier\.decoder_lin\.3\.", "object_classifier.classify."),
    (r"RCNN_cls_score\.", "object_classifier.distribution."),
]


def _layer_rules(theirs: str, ours: str, attention: str, norms: dict[str, str], projections: bool = False):
    """Rules for the post-norm layers `{theirs}.{i}.*` -> `{ours}.{i}.*` (FFN linear1/linear2 -> ffn.0/ffn.3)."""
    rules = [(rf"{theirs}\.(\d+)\.{attention}\.", rf"{ours}.\1.attention."),
             (rf"{theirs}\.(\d+)\.linear1\.", rf"{ours}.\1.ffn.0."),
             (rf"{theirs}\.(\d+)\.linear2\.", rf"{ours}.\1.ffn.3.")]
    rules += [(rf"{theirs}\.(\d+)\.{a}\.", rf"{ours}.\1.{b}.") for a, b in norms.items()]
    if projections:
        rules += [(rf"{theirs}\.(\d+)\.W_{x}\.", rf"{ours}.\1.w_{x}.") for x in "qkv"]
    return rules


def _head_rules(prefix: str, ours: str, suffix: str = "") -> list:
    """The reference's `{prefix}{a,s,c}_rel_compress` heads -> `{ours}{attention,spatial,contacting}{suffix}`."""
    return [(rf"{prefix}{short}_rel_compress\.", f"{ours}{name}{suffix}.")
            for short, name in (("a", "attention"), ("s", "spatial"), ("c", "contacting"))]


_STTRAN = _COMMON + _layer_rules(r"glocal_transformer\.local_attention\.layers", "transformer.spatial", "self_attn",
                                 {"norm1": "norm1", "norm2": "norm2"}) \
    + _layer_rules(r"glocal_transformer\.global_attention\.layers", "transformer.temporal", "multihead2",
                   {"norm3": "norm1"}) \
    + [(r"glocal_transformer\.position_embedding\.", "transformer.frame_embedding.")] \
    + _head_rules("", "", "_head")
_TEMPURA = [
    (r"glocal_transformer\.mem_attention\.(attention|spatial|contacting)\.", r"rel_memory.attention.\1."),
    (r"glocal_transformer\.mem_attention\.", "rel_memory.attention."),
    (r"glocal_transformer\.selector\.", "rel_memory.selector."),
    (r"object_classifier\.mem_attention\.", "obj_memory.attention."),
    (r"object_classifier\.selector\.", "obj_memory.selector."),
    (r"object_classifier\.encoder_tran\.", "tracker.encoder."),
    (r"object_classifier\.intermediate\.([01])\.", r"object_classifier.hidden.\1."),
    (r"object_classifier\.decoder_lin\.0\.", "object_classifier.classify."),
    (r"object_classifier\.decoder_lin\.heads\.", "object_classifier.classify.heads."),
] + [(rf"{short}_rel_compress\.heads\.", f"gmm.{name}.heads.")
     for short, name in (("a", "attention"), ("s", "spatial"), ("c", "contacting"))] + _STTRAN
_STKET = _COMMON \
    + _layer_rules(r"spatial_encoder\.encoder\.layers", "encoder", "self_attn", {"norm1": "norm1", "norm2": "norm2"},
                   projections=True) \
    + _layer_rules(r"temporal_decoder\.decoder\.layers", "decoder", "self_attn", {"norm3": "norm1"}, projections=True) \
    + _layer_rules(r"ensemble_decoder\.decoder\.layers", "ensemble", "self_attn", {"norm3": "norm1"},
                   projections=True) \
    + [(r"temporal_decoder\.position_embedding\.", "frame_embedding."),
       (r"ensemble_decoder\.position_embedding\.", "slot_embedding."),
       (r"spatial_encoder\.initialPrior$", "spatial_prior.initial"),
       (r"spatial_encoder\.state_fc\.", "spatial_prior.mlp."),
       (r"temporal_decoder\.initialPrior$", "temporal_prior.initial"),
       (r"temporal_decoder\.specificPrior$", "temporal_prior.specific"),
       (r"temporal_decoder\.state_fc\.", "temporal_prior.mlp.")] \
    + _head_rules("spa_", "branch_heads.encoder.") + _head_rules("tem_", "branch_heads.decoder.") \
    + _head_rules("ens_", "branch_heads.ensemble.")
RULES = {"sttran": _STTRAN, "tempura": _TEMPURA, "stket": _STKET, "scenellm": _STTRAN}
IGNORED = {  # reference tensors with no counterpart, by model (see the module docstring)
    "stket": (r"[asc]_rel_compress\.",),
    "tempura": (r"object_classifier\.positional_encoder\.pe$",),
}


class ReferenceWeightsError(ValueError):
    """A reference state dict does not fit the model; the message lists the keys."""


def _rename(key: str, rules: list) -> str | None:
    for pattern, replacement in rules:
        if re.match(pattern, key):
            return re.sub("^" + pattern, replacement, key, count=1)
    return None


def _stack_gmm(state: dict[str, torch.Tensor], prefix: str, mixtures: int) -> dict[str, torch.Tensor]:
    """The reference's per-component GMM layers `{prefix}heads.{mu,var,pi}_k` -> our stacked mean / variance /
    weight Linear layers (component k = rows k·C .. (k+1)·C)."""
    out = {}
    for ours, theirs in (("mean", "mu"), ("variance", "var"), ("weight", "pi")):
        for part in ("weight", "bias"):
            out[f"{prefix}{ours}.{part}"] = torch.cat(
                [state.pop(f"{prefix}heads.{theirs}_{k + 1}.{part}") for k in range(mixtures)])
    return out


def convert_reference(state_dict: dict, model: RelationModel, name: str, detector: dict | None = None,
                      rel_memory=None, object_memory=None) -> dict[str, torch.Tensor]:
    """The reference state dict (and detector / memories) in the model's names; raises ReferenceWeightsError."""
    state_dict = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state_dict.items()}
    if detector is not None:
        state_dict.update({k: v for k, v in detector.items() if k.startswith("RCNN_cls_score.")})
    mode = model.config.mode
    rules, ignored = RULES[name], IGNORED.get(name, ())
    target = model.state_dict()
    renamed, unknown = {}, []
    for key, value in state_dict.items():
        if any(re.match(p, key) for p in ignored):
            continue
        new = _rename(key, rules)
        if new is None:
            unknown.append(key)
            continue
        unused_here = new not in target and any(new.startswith(p) for p in (
            "object_classifier.", "obj_memory.", "tracker.", "spatial_prior.", "temporal_prior."))
        if unused_here and (mode == "predcls" or new.split(".")[0] not in dict(model.named_children())):
            continue  # built by the reference in every mode / for switched-off priors, unused by this model
        renamed[new] = value
    if name == "tempura":
        k = model.config.num_mixtures
        for head in ("gmm.attention.", "gmm.spatial.", "gmm.contacting.", "object_classifier.classify."):
            if f"{head}heads.mu_1.weight" in renamed:
                renamed.update(_stack_gmm(renamed, head, k))
        memory_groups = {"rel_memory": rel_memory, "obj_memory": object_memory}
        for module, memory in memory_groups.items():
            if f"{module}.ready" not in target:
                continue
            if module == "rel_memory" and isinstance(memory, dict) and memory:
                for group, prototypes in memory.items():
                    renamed[f"rel_memory.{group}_prototypes"] = torch.as_tensor(prototypes)
            elif module == "obj_memory" and torch.is_tensor(memory) and memory.numel():
                renamed["obj_memory.objects_prototypes"] = memory
            ready = f"{module}.objects_prototypes" in renamed or f"{module}.attention_prototypes" in renamed
            renamed[f"{module}.ready"] = torch.tensor(ready)
            for key in target:  # an empty reference memory ([] before the first epoch): zero prototypes
                if key.startswith(f"{module}.") and key.endswith("_prototypes") and key not in renamed:
                    renamed[key] = torch.zeros_like(target[key])
    unknown += [k for k in renamed if k not in target]
    missing = [k for k in target if k not in renamed and not k.endswith("num_batches_tracked")]
    if unknown or missing:
        lines = []
        if unknown:
            lines.append(f"{len(unknown)} reference tensors have no place in this {name} ({mode}) model: "
                         + ", ".join(sorted(unknown)[:20]) + (" ..." if len(unknown) > 20 else ""))
        if missing:
            hint = (" (object_classifier.distribution comes from the detector: give the AG Faster R-CNN weights, "
                    "-backbone_weights faster_rcnn_ag.pth)" if "object_classifier.distribution.weight" in missing
                    else "")
            lines.append(f"{len(missing)} tensors of the model are not in the file{hint}: "
                         + ", ".join(sorted(missing)[:20]) + (" ..." if len(missing) > 20 else ""))
        raise ReferenceWeightsError("; ".join(lines))
    bad_shapes = [f"{k} {tuple(v.shape)} (model {tuple(target[k].shape)})" for k, v in renamed.items()
                  if tuple(v.shape) != tuple(target[k].shape)]
    if bad_shapes:
        raise ReferenceWeightsError(f"reference tensors of the wrong shape for this {name} ({mode}) model "
                                    f"(check the architecture flags): {', '.join(bad_shapes[:10])}")
    return {k: renamed.get(k, target[k]) for k in target}


def import_reference(state_dict: dict, model: RelationModel, name: str, detector: dict | None = None,
                     rel_memory=None, object_memory=None) -> RelationModel:
    """Load a reference state dict (released checkpoint's 'state_dict') into `model` (-model `name`); `detector`:
    the Faster R-CNN state dict (RCNN_cls_score) for SGCLS/SGDET; TEMPURA's memories from the same file."""
    model.load_state_dict(convert_reference(state_dict, model, name, detector, rel_memory, object_memory))
    return model


def is_reference_checkpoint(state: dict) -> bool:
    """A released reference file ({'state_dict': ...}) rather than one of train.py's checkpoints."""
    return "state_dict" in state and "model" not in state
