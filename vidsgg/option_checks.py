"""Cross-flag checks of vidsgg/train.py and vidsgg/test.py (errors name the flags) and the defaults that depend
on other flags; the flags themselves are defined in options.py."""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from vidsgg.options import MODEL_FLAGS, TRACKING_FLAGS, OBJECT_CLASSIFIER_FLAGS, GMM_ONLY_FLAGS, MODES, LLM_FLAGS, EASG_MODES, EASG_ANNOTATION_FILE, train_parser


def validate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Cross-flag checks (errors name the flags) and the defaults that depend on other flags. What was read
    differently from the letter of the flags (a guide spelling mapped onto ours) is listed in `args.notices`."""
    notices: list[str] = []
    training = hasattr(args, "epochs")
    args.model = args.model or "sttran"
    if args.dataset is None:
        easg_layout = (Path(args.data_path) / EASG_ANNOTATION_FILE).is_file()
        args.dataset = "easg" if easg_layout else "action_genome"
        if easg_layout:
            notices.append(f"-data_path {args.data_path} holds the EASG layout ({EASG_ANNOTATION_FILE}): "
                           "read as -dataset easg")
    if args.dataset == "easg" and args.mode == "predcls":
        args.mode = "edgecls"
        notices.append("-mode predcls on EASG is -mode edgecls (GT verb and objects given, the edges predicted)")
    args.mode = args.mode or ("easgcls" if args.dataset == "easg" else "predcls")
    for model, flags in MODEL_FLAGS.items():
        given = [f"-{f}" for f in flags if getattr(args, f) is not None]
        if given and args.model != model:
            parser.error(f"{', '.join(given)} only apply to -model {model} (got -model {args.model})")
    if args.model == "tempura":
        _validate_tempura(args, parser, notices)
    if args.model == "stket":
        _validate_stket(args, parser)
    args.scenellm_stages = None
    if args.model == "scenellm":
        _validate_scenellm_stage(args, parser, training, notices)
    args.spatial_layer = 1 if args.spatial_layer is None else args.spatial_layer
    args.temporal_layer = 3 if args.temporal_layer is None else args.temporal_layer
    args.window = 2 if args.window is None else args.window
    _validate_training_length(args, parser)
    _validate_numbers(args, parser)
    if (3 * args.proj_dim + 2 * args.embed_dim) % args.num_heads:
        parser.error(f"-num_heads {args.num_heads} must divide the pair width 3·proj_dim + 2·embed_dim "
                     f"= {3 * args.proj_dim + 2 * args.embed_dim}")
    if args.dataset == "easg":
        if args.mode not in EASG_MODES:
            parser.error(f"-dataset easg takes -mode {'|'.join(EASG_MODES)}, got -mode {args.mode}")
        if args.model != "sttran":
            parser.error(f"-dataset easg is implemented for -model sttran only, got -model {args.model}")
        if args.detections:
            parser.error("-detections does not apply to -dataset easg")
        if getattr(args, "curriculum", "none") != "none":
            parser.error("-curriculum applies to -dataset action_genome (it ranks videos by their AG relations)")
    elif args.mode not in MODES:
        parser.error(f"-mode {args.mode} is an EASG mode: add -dataset easg (Action Genome: {'|'.join(MODES)})")
    if args.mode == "sgdet" and not args.detections:
        parser.error("-mode sgdet needs -detections FILE (write one with vidsgg/train_detector.py)")
    if args.opt_level is not None:
        if args.opt_level in ("O2", "O3"):
            parser.error(f"-opt_level {args.opt_level} (apex's fp16 weights) is not available: torch.amp autocast "
                         "replaces apex here; use -use_amp True -opt_level O1 (or -use_amp True alone)")
        if args.opt_level == "O0" and args.use_amp:
            parser.error("-opt_level O0 is fp32 (no mixed precision): drop -use_amp True, or use -opt_level O1")
        if args.opt_level == "O1" and not args.use_amp:
            notices.append("-opt_level O1 is mixed precision: -use_amp True (torch.amp autocast, bf16)")
        args.use_amp = args.opt_level == "O1"
    if args.local_rank is not None and int(os.environ.get("LOCAL_RANK", args.local_rank)) != args.local_rank:
        parser.error(f"--local-rank {args.local_rank} differs from the launcher's LOCAL_RANK "
                     f"{os.environ['LOCAL_RANK']}")
    if training and (int(os.environ.get("WORLD_SIZE", "1")) > 1) != args.distributed:
        parser.error("-distributed True needs a torchrun launch with several processes" if args.distributed else
                     "launched with several processes: pass -distributed True")
    if training and str(args.resume_from).lower() in ("latest", "auto", "last") and not args.save_path:
        parser.error(f"-resume_from {args.resume_from} needs -save_path RUN (the folder of the run to continue)")
    if training and args.init_from is not None:
        if not Path(args.init_from).is_file():
            parser.error(f"-init_from: file not found: {args.init_from}")
        if args.resume_from is not None and str(args.resume_from).lower() not in ("latest", "auto", "last"):
            parser.error(f"-init_from {args.init_from} and -resume_from {args.resume_from} both give the weights to "
                         "start from: give one (-resume_from latest goes with -init_from: the run's own checkpoint "
                         "once it has one)")
    args.notices = notices
    return args


def _validate_tempura(args: argparse.Namespace, parser: argparse.ArgumentParser, notices: list[str]) -> None:
    if args.mode == "predcls" and args.temporal_window is not None:
        # The guide's TEMPURA "advanced" command gives -temporal_window in predcls, where the reference has no
        # tracking (m3sgg documents the flag but never defines it): the temporal context the model has there is
        # the decoder's sliding window. In sgcls/sgdet the flag keeps its tracking meaning.
        if args.window not in (None, args.temporal_window):
            parser.error(f"-temporal_window {args.temporal_window} without -tracking True is the temporal decoder's "
                         f"window, which -window {args.window} also sets: give one of them")
        args.window, args.temporal_window = args.temporal_window, None
        notices.append(f"-temporal_window {args.window} without -tracking True: the temporal decoder's sliding "
                       f"window (-window {args.window})")
    if not args.tracking:
        given = [f"-{f}" for f in TRACKING_FLAGS if getattr(args, f) is not None]
        if given:
            parser.error(f"{', '.join(given)} need -tracking True")
    if args.obj_loss_weighting not in (None, "none") and args.obj_head != "gmm":
        parser.error("-obj_loss_weighting needs -obj_head gmm (the linear head has no uncertainty)")
    if args.rel_head == "linear":
        flags = GMM_ONLY_FLAGS[2:] if args.obj_head == "gmm" else GMM_ONLY_FLAGS  # K, σ² also shape the object head
        given = [f"-{f}" for f in flags if getattr(args, f) not in (None, "none", "simple")]
        if given:
            parser.error(f"{', '.join(given)} need the GMM relation heads (-rel_head gmm)")
    if args.mode == "predcls":
        given = [f"-{f}" for f in OBJECT_CLASSIFIER_FLAGS if getattr(args, f) not in (None, False, "none")]
        if given:
            parser.error(f"{', '.join(given)} apply to sgcls and sgdet (the object classifier; predcls uses the "
                         "GT labels)")


def _validate_stket(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    given = [f"-{f}" for f in ("spatial_layer", "temporal_layer") if getattr(args, f) is not None]
    if given:
        parser.error(f"{', '.join(given)} do not apply to -model stket: use -enc_layer_num / -dec_layer_num")
    for loss, use in (("spatial_prior_loss", "use_spatial_prior"), ("temporal_prior_loss", "use_temporal_prior")):
        if getattr(args, loss) and not getattr(args, use):
            parser.error(f"-{loss} needs -{use} (the loss trains the heads on that prior)")
    if args.prior_path is not None and not (args.use_spatial_prior or args.use_temporal_prior):
        parser.error("-prior_path applies with -use_spatial_prior or -use_temporal_prior only")
    if args.pred_contact_threshold is not None and not args.use_temporal_prior:
        parser.error("-pred_contact_threshold selects the temporal prior: it needs -use_temporal_prior")
    if args.pred_contact_threshold is not None and not 0 <= args.pred_contact_threshold <= 1:
        parser.error(f"-pred_contact_threshold must be in [0, 1], got {args.pred_contact_threshold}")


def _validate_scenellm_stage(args: argparse.Namespace, parser: argparse.ArgumentParser, training: bool,
                             notices: list[str]) -> None:
    """No -scenellm_stage in train.py: the whole model is trained, vqvae then stage1, or vqvae then stage2 when
    LoRA fine-tuning flags are given (the guide's "basic" and "with language model fine-tuning" commands)."""
    wants_lora = [f"-{f}" for f in (*LLM_FLAGS, "stage2_iterations") if getattr(args, f) is not None]
    if args.scenellm_stage is None and training:
        final = "stage2" if wants_lora else "stage1"
        args.scenellm_stages = ("vqvae", final)
        args.scenellm_stage = final  # the model the run ends with (what summary.py and model builders see)
        if args.resume_from is not None and str(args.resume_from).lower() not in ("latest", "auto", "last"):
            parser.error("-resume_from FILE starts one stage from a checkpoint: add -scenellm_stage vqvae|stage1|"
                         "stage2 (without it train.py runs the stages in turn; -resume_from latest continues them)")
        if args.init_from is not None:
            parser.error("-init_from FILE starts one stage from its weights: add -scenellm_stage vqvae|stage1|stage2")
        if final == "stage1" and args.stage2_iterations is not None:
            parser.error("-stage2_iterations applies to stage2")
        if final == "stage2" and args.stage1_iterations is not None:
            parser.error(f"{', '.join(wants_lora)} fine-tune the LM (stage2): -stage1_iterations does not apply; "
                         "run the stages one by one with -scenellm_stage to cap stage1")
        notices.append(f"no -scenellm_stage: training the VQ-VAE (-vqvae_epochs) into <save_path>/vqvae, then "
                       f"{final} for -epochs" + (f" ({', '.join(wants_lora)}: LoRA fine-tuning)" if wants_lora else ""))
        return
    args.scenellm_stage = args.scenellm_stage or "vqvae"
    if args.scenellm_stage != "stage2" and wants_lora:
        parser.error(f"{', '.join(wants_lora)} apply to -scenellm_stage stage2 only")


def _validate_numbers(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Numeric flags in their ranges (NaN and inf refused), checked before anything is built."""
    at_least_one = ["spatial_layer", "temporal_layer", "hidden_dim", "proj_dim", "embed_dim", "num_heads", "window",
                    "union_dim", "batch_size", "epochs", "save_freq", "eval_freq", "accumulate_grad_batches",
                    "enc_layer_num", "dec_layer_num", "N_layer", "window_size", "latent_dim", "codebook_size",
                    "lora_r", "ot_step", "vqvae_epochs", "num_mixtures", "temporal_window", "image_size", "max_size"]
    # (SceneLLM's float flags are checked by its config, with one message for all of them.)
    rules = [(name, lambda v: v >= 1, "≥ 1") for name in at_least_one] + [("lr", lambda v: v > 0, "> 0")] + [
        (name, lambda v: v >= 0, "≥ 0") for name in (
            "weight_decay", "clip_grad", "warmup_steps", "keep_last", "save_every_steps", "num_workers",
            "max_eval_videos", "early_stopping_patience", "early_stopping_min_delta", "seed", "lambda_con",
            "uncertainty_threshold", "gmm_regularization", "stage1_iterations", "stage2_iterations")] + [
        ("bn_momentum", lambda v: 0 < v <= 1, "in (0, 1]"), ("mem_feat_lambda", lambda v: 0 <= v <= 1, "in [0, 1]")]
    for name, ok, expected in rules:
        value = getattr(args, name, None)
        if value is None:
            continue
        if (isinstance(value, float) and not math.isfinite(value)) or not ok(value):
            parser.error(f"-{name} must be {expected}, got {value}")


def _validate_training_length(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """-epochs (100) or, for SceneLLM's vqvae stage, -vqvae_epochs (5); stage iteration caps; curriculum."""
    if not hasattr(args, "epochs"):  # test.py
        return
    stage = args.scenellm_stage
    if args.scenellm_stages:  # vqvae then the relation stage: -vqvae_epochs and -epochs
        args.vqvae_epochs = 5 if args.vqvae_epochs is None else args.vqvae_epochs
        stage = args.scenellm_stages[-1]
    elif stage == "vqvae":
        if args.epochs is not None:
            parser.error("-scenellm_stage vqvae trains for -vqvae_epochs; do not also give -epochs")
        args.epochs = 5 if args.vqvae_epochs is None else args.vqvae_epochs
    elif args.vqvae_epochs is not None and args.model == "scenellm":
        parser.error("-vqvae_epochs applies to -scenellm_stage vqvae only")
    args.epochs = 100 if args.epochs is None else args.epochs
    if args.model == "scenellm" and stage != "stage1" and args.stage1_iterations is not None:
        parser.error("-stage1_iterations applies to -scenellm_stage stage1 only")
    caps = [v for v in (args.stage1_iterations, args.stage2_iterations) if v] if args.model == "scenellm" else []
    args.max_steps = caps[0] if caps else 0  # 0 = no cap; the loop stops after this many optimizer steps
    if args.curriculum == "none":
        if args.curriculum_epochs is not None:
            parser.error("-curriculum_epochs needs -curriculum easy_to_hard")
        args.curriculum_boundaries = []
        return
    text = args.curriculum_epochs or ",".join(str(max(1, round(args.epochs * f))) for f in (1 / 3, 2 / 3))
    try:
        bounds = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        parser.error(f"-curriculum_epochs: expected comma-separated epoch numbers like 2,4, got {text!r}")
    if not bounds or bounds != sorted(set(bounds)) or bounds[0] < 1:
        parser.error(f"-curriculum_epochs: epochs must be increasing and ≥ 1, got {text!r}")
    args.curriculum_boundaries = bounds


def parse_train_args(argv: list[str]) -> argparse.Namespace:
    """train.py's flags parsed and validated (for scripts and tests that build models from flags)."""
    parser = train_parser()
    return validate(parser.parse_args(argv), parser)
