"""Command-line options of vidsgg/train.py and vidsgg/test.py, single-dash as the training guide
(`-mode predcls -lr 1e-5`). Unknown flags, abbreviations and flags that do not apply to the chosen model are
errors naming them."""
from __future__ import annotations

import argparse

MODELS = ("sttran", "tempura")
# Flags that belong to one model: given with another -model they are an error (default None = not given).
MODEL_FLAGS = {"tempura": ("num_mixtures", "mem_feat_lambda", "mem_feat_selection", "mem_fusion",
                           "rel_mem_weight_type", "tracking", "obj_con_loss", "lambda_con", "uncertainty_threshold",
                           "gmm_regularization", "temporal_window", "rel_loss_weighting")}
TRACKING_FLAGS = ("obj_con_loss", "lambda_con", "temporal_window")
MODES = ("predcls", "sgcls", "sgdet")


class StrictParser(argparse.ArgumentParser):
    """No prefix matching at all: Python 3.11 still expands single-dash abbreviations (`-epoch` -> `-epochs`)
    even with allow_abbrev=False, so a misspelt flag would silently set another one."""

    def _get_option_tuples(self, option_string):
        return []


def str2bool(value: str) -> bool:
    if isinstance(value, bool):
        return value
    if value.lower() in ("true", "1", "yes", "y"):
        return True
    if value.lower() in ("false", "0", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {value!r}")


def _common(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("-mode", choices=MODES, default="predcls", help="predcls (GT boxes+labels), sgcls (GT boxes), sgdet")
    add("-model", choices=MODELS, default="sttran")
    add("-data_path", default="data/action_genome", help="Action Genome root (annotations/, frames/)")
    add("-datasize", choices=("mini", "small", "large"), default="large",
        help="mini: first 80,000 frames; small: first 200 videos by name; large: everything")
    add("-dataset", choices=("action_genome",), default="action_genome")
    add("-seed", type=int, default=0)
    add("-device", default=None, help="cuda or cpu (default: cuda when available)")
    add("-distributed", type=str2bool, default=False, help="True when launched by torchrun with several processes")
    add("-spatial_layer", type=int, default=1, help="spatial encoder layers")
    add("-temporal_layer", type=int, default=3, help="temporal decoder layers")
    add("-hidden_dim", type=int, default=2048, help="transformer feed-forward width")
    add("-proj_dim", type=int, default=512, help="width of the subject/object/union projections (pair = 3·proj + 2·embed)")
    add("-embed_dim", type=int, default=200, help="class-name embedding width (GloVe-6B: 200)")
    add("-union_dim", type=int, default=256, help="channels of the union-box / spatial-mask branch")
    add("-bn_momentum", type=float, default=0.01, help="BatchNorm momentum of the spatial-mask CNN (short runs: 0.1)")
    add("-num_heads", type=int, default=8)
    add("-window", type=int, default=2, help="temporal sliding window in frames")
    add("-word_vectors", default=None, help="glove:PATH for a GloVe text file; default: learned embeddings")
    add("-backbone_depth", type=int, default=101, help="torchvision ResNet depth (18, 34, 50, 101, 152)")
    add("-backbone_weights", default=None, help="local ResNet or train_detector.py checkpoint; default random init")
    add("-image_size", type=int, default=600, help="short side of the resized frames (px)")
    add("-max_size", type=int, default=1000, help="longest side at most (px)")
    add("-cache_dir", default=None, help="feature cache folder (default <data_path>/feature_cache; 'none' = off)")
    add("-detections", default=None, help="SGDET detections file (.pt) from vidsgg/train_detector.py")
    add("-mean_recall", choices=("per_predicate", "per_frame"), default="per_predicate")
    add("-use_amp", type=str2bool, default=False, help="bf16 autocast")
    add("-strict_data", type=str2bool, default=False, help="raise on an unreadable frame instead of skipping the video")
    add("-max_eval_videos", type=int, default=0, help="evaluate on at most this many test videos (0 = all)")
    tempura = parser.add_argument_group("TEMPURA (-model tempura only)")
    add = tempura.add_argument
    add("-num_mixtures", type=int, default=None, help="Gaussian components per relation head (default 4)")
    add("-mem_feat_lambda", type=float, default=None, help="weight of the memory feature, manual selection (0.5)")
    add("-mem_feat_selection", choices=("manual", "automated"), default=None, help="fixed λ or a learned gate")
    add("-mem_fusion", choices=("early", "late"), default=None, help="memory mixed before / after the transformer")
    add("-rel_mem_weight_type", choices=("simple", "al", "ep", "both"), default=None,
        help="prototype weights: none, 1/(1+aleatoric), 1/(1+epistemic), both")
    add("-tracking", type=str2bool, default=None, help="object tracking transformer + consistency loss")
    add("-obj_con_loss", choices=("euc_con", "info_nce"), default=None, help="consistency loss (needs -tracking)")
    add("-lambda_con", type=float, default=None, help="weight of the consistency loss (1.0)")
    add("-uncertainty_threshold", type=float, default=None,
        help="pairs with mean aleatoric uncertainty above this are left out of the memory (0 = off)")
    add("-gmm_regularization", type=float, default=None, help="weight of the mean mixture variance in the loss (0)")
    add("-temporal_window", type=int, default=None, help="frames a tracked object attends to, |Δt| < window (4)")
    add("-rel_loss_weighting", choices=("none", "al", "ep"), default=None,
        help="weight each pair's relation loss by 1/(1+aleatoric|epistemic uncertainty)")


def train_parser() -> argparse.ArgumentParser:
    parser = StrictParser(prog="vidsgg/train.py", allow_abbrev=False, description="Train a VidSGG model.")
    _common(parser)
    add = parser.add_argument
    add("-lr", type=float, default=1e-5)
    add("-batch_size", type=int, default=1, help="videos per step (per process)")
    add("-epochs", type=int, default=10)
    add("-save_path", default=None, help="run folder (default output/<dataset>/<model>_<mode>_<timestamp>)")
    add("-weight_decay", type=float, default=0.01, help="AdamW weight decay")
    add("-clip_grad", type=float, default=5.0, help="max gradient norm (0 = no clipping)")
    add("-warmup_steps", type=int, default=0, help="linear lr warmup over this many optimizer steps")
    add("-scheduler", choices=("step", "cosine", "plateau"), default="plateau",
        help="step: ×0.1 every third of training; cosine: to 0 at the end; plateau: ×0.5 when val R@20 stalls")
    add("-save_freq", type=int, default=1, help="write checkpoint_epoch_N.tar every N epochs")
    add("-keep_last", type=int, default=3, help="keep the newest N epoch checkpoints (0 = all)")
    add("-eval_freq", type=int, default=1, help="evaluate every N epochs (and after the last)")
    add("-accumulate_grad_batches", type=int, default=1)
    add("-resume_from", default=None,
        help="checkpoint to resume exactly ('latest' = newest in -save_path); a checkpoint of another mode "
             "loads its compatible weights only (progressive training, e.g. predcls -> sgcls)")
    add("-early_stopping_patience", type=int, default=0, help="stop after N evaluations without improvement (0 = off)")
    add("-early_stopping_min_delta", type=float, default=0.0, help="improvement of val R@20 (fraction) that counts")
    add("-bce_loss", type=str2bool, default=False, help="BCE instead of multi-label margin for spatial/contacting")
    add("-num_workers", type=int, default=0)
    add("-profile", type=str2bool, default=False, help="torch.profiler trace into <run>/profile")
    add("-deterministic", type=str2bool, default=False, help="deterministic kernels (bitwise-exact resume)")
    return parser


def test_parser() -> argparse.ArgumentParser:
    parser = StrictParser(prog="vidsgg/test.py", allow_abbrev=False, description="Evaluate a VidSGG model.")
    _common(parser)
    parser.add_argument("-model_path", default=None, help="checkpoint to evaluate")
    parser.add_argument("-random_init", type=str2bool, default=False,
                        help="evaluate the untrained model (the random-weight baseline) instead of -model_path")
    parser.add_argument("-output", default=None, help="folder for metrics.json (default: next to -model_path)")
    return parser


def validate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Cross-flag checks (errors name the flags)."""
    positive = ["spatial_layer", "temporal_layer", "hidden_dim", "proj_dim", "embed_dim", "num_heads", "window",
                "union_dim"]
    positive += [k for k in ("batch_size", "epochs", "save_freq", "eval_freq", "accumulate_grad_batches")
                 if hasattr(args, k)]
    for name in positive:
        if getattr(args, name) < 1:
            parser.error(f"-{name} must be ≥ 1, got {getattr(args, name)}")
    if (3 * args.proj_dim + 2 * args.embed_dim) % args.num_heads:
        parser.error(f"-num_heads {args.num_heads} must divide the pair width 3·proj_dim + 2·embed_dim "
                     f"= {3 * args.proj_dim + 2 * args.embed_dim}")
    for model, flags in MODEL_FLAGS.items():
        given = [f"-{f}" for f in flags if getattr(args, f) is not None]
        if given and args.model != model:
            parser.error(f"{', '.join(given)} only apply to -model {model} (got -model {args.model})")
    if args.model == "tempura" and not args.tracking:
        given = [f"-{f}" for f in TRACKING_FLAGS if getattr(args, f) is not None]
        if given:
            parser.error(f"{', '.join(given)} need -tracking True")
    if args.mode == "sgdet" and not args.detections:
        parser.error("-mode sgdet needs -detections FILE (write one with vidsgg/train_detector.py)")
    return args
