"""Command-line options of vidsgg/train.py and vidsgg/test.py, single-dash as the training guide
(`-mode predcls -lr 1e-5`). Unknown flags, abbreviations and flags that do not apply to the chosen model are
errors naming them. The checks across flags and the defaults that depend on other flags are in option_checks.py."""
from __future__ import annotations

import argparse

MODELS = ("sttran", "tempura", "stket", "scenellm")
# Flags that belong to one model: given with another -model they are an error (default None = not given).
MODEL_FLAGS = {
    "tempura": ("num_mixtures", "mem_feat_lambda", "mem_feat_selection", "mem_fusion", "rel_mem_weight_type",
                "tracking", "obj_con_loss", "lambda_con", "uncertainty_threshold", "gmm_regularization",
                "temporal_window", "rel_loss_weighting", "obj_loss_weighting", "rel_head", "obj_head",
                "rel_mem_compute", "obj_mem_compute", "mlm"),
    "stket": ("enc_layer_num", "dec_layer_num", "N_layer", "window_size", "pred_contact_threshold",
              "use_spatial_prior", "spatial_prior_loss", "use_temporal_prior", "temporal_prior_loss", "prior_path"),
    "scenellm": ("latent_dim", "codebook_size", "commitment_cost", "llm_name", "lora_r", "lora_alpha",
                 "lora_dropout", "ot_step", "vqvae_epochs", "stage1_iterations", "stage2_iterations", "alpha_obj",
                 "alpha_rel", "scenellm_stage", "llm_lr", "freeze_llm_epochs"),
}
TRACKING_FLAGS = ("temporal_window",)
OBJECT_CLASSIFIER_FLAGS = ("obj_head", "obj_mem_compute", "tracking", "obj_con_loss", "lambda_con")  # sgcls/sgdet
GMM_ONLY_FLAGS = ("num_mixtures", "gmm_regularization", "rel_loss_weighting", "rel_mem_weight_type",
                  "uncertainty_threshold")
MODES = ("predcls", "sgcls", "sgdet")
APEX_LEVELS = ("O0", "O1", "O2", "O3")
LLM_FLAGS = ("llm_lr", "freeze_llm_epochs")  # they mean LoRA fine-tuning: SceneLLM's stage2
EASG_MODES = ("easgcls", "sgcls", "edgecls")  # -dataset easg: verb + objects + edges / objects + edges / edges
EASG_ANNOTATION_FILE = "EASG_unict_master_final.json"  # its presence under -data_path marks the EASG layout


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
    add("-mode", choices=sorted(set(MODES + EASG_MODES)), default=None,
        help="Action Genome: predcls (default; GT boxes+labels), sgcls (GT boxes), sgdet; EASG: easgcls, sgcls, "
             "edgecls; test.py: the checkpoint's unless given")
    add("-model", choices=MODELS, default=None, help="the relation model (sttran; test.py: the checkpoint's)")
    add("-data_path", default="data/action_genome",
        help="dataset root: Action Genome (annotations/, frames/) or EASG (EASG_unict_master_final.json: read as "
             "-dataset easg)")
    add("-datasize", choices=("mini", "small", "large"), default="large",
        help="mini: first 80,000 frames; small: first 200 videos by name; large: everything")
    add("-dataset", type=str.lower, choices=("action_genome", "easg"), default=None,
        help="action_genome (default; test.py: the checkpoint's) or easg: Egocentric Action Scene Graphs (verbs and edges; -model sttran, modes easgcls|sgcls|edgecls)")
    add("-seed", type=int, default=0)
    add("-device", default=None, help="cuda or cpu (default: cuda when available)")
    add("-distributed", type=str2bool, default=False, help="True when launched by torchrun with several processes")
    add("-spatial_layer", type=int, default=None, help="spatial encoder layers (1; STKET: -enc_layer_num)")
    add("-temporal_layer", type=int, default=None, help="temporal decoder layers (3; STKET: -dec_layer_num)")
    add("-hidden_dim", type=int, default=2048, help="transformer feed-forward width")
    add("-proj_dim", type=int, default=512, help="width of the subject/object/union projections (pair = 3·proj + 2·embed)")
    add("-embed_dim", type=int, default=200, help="class-name embedding width (GloVe-6B: 200)")
    add("-union_dim", type=int, default=256, help="channels of the union-box / spatial-mask branch")
    add("-bn_momentum", type=float, default=0.01, help="BatchNorm momentum of the spatial-mask CNN (short runs: 0.1)")
    add("-num_heads", type=int, default=8)
    add("-window", type=int, default=None, help="temporal sliding window in frames (2)")
    add("-word_vectors", default=None, help="glove:PATH for a GloVe text file; default: learned embeddings")
    add("-backbone_depth", type=int, default=101, help="torchvision ResNet depth (18, 34, 50, 101, 152)")
    add("-backbone_weights", default=None, help="local ResNet or train_detector.py checkpoint; default random init")
    add("-image_size", type=int, default=600, help="short side of the resized frames (px)")
    add("-max_size", type=int, default=1000, help="longest side at most (px)")
    add("-cache_dir", default=None, help="feature cache folder (default <data_path>/feature_cache; 'none' = off)")
    add("-detections", default=None, help="SGDET detections file (.pt) from vidsgg/train_detector.py")
    add("-mean_recall", choices=("per_predicate", "per_frame"), default="per_predicate")
    add("-use_amp", type=str2bool, default=False, help="mixed precision: torch.amp autocast in bf16")
    add("-opt_level", choices=APEX_LEVELS, default=None,
        help="apex's names, accepted as the guide writes them: O1 = -use_amp True (torch.amp autocast); O0 = fp32")
    add("-strict_data", type=str2bool, default=False, help="raise on an unreadable frame instead of skipping the video")
    add("-allow_outside_data", type=str2bool, default=False,
        help="allow annotation keys that point outside -data_path ('../', absolute paths)")
    # torch.distributed.launch (the guide's launcher) passes --local-rank=N; the rank is read from LOCAL_RANK.
    add("--local-rank", "--local_rank", dest="local_rank", type=int, default=None, help=argparse.SUPPRESS)
    add("-max_eval_videos", type=int, default=0, help="evaluate on at most this many test videos (0 = all)")
    tempura = parser.add_argument_group("TEMPURA (-model tempura only)")
    add = tempura.add_argument
    add("-num_mixtures", "-K", type=int, default=None, help="Gaussian components per GMM head (default 4)")
    add("-mem_feat_lambda", type=float, default=None, help="weight of the memory feature, manual selection (0.5)")
    add("-mem_feat_selection", choices=("manual", "automated"), default=None, help="fixed λ or a learned gate")
    add("-mem_fusion", choices=("early", "late"), default=None, help="memory mixed before / after the transformer")
    add("-rel_mem_weight_type", choices=("simple", "al", "ep", "both"), default=None,
        help="prototype weights: none, exp(aleatoric), exp(epistemic), exp(both), normalised per class")
    add("-tracking", type=str2bool, default=None,
        help="object tracking transformer over the object classifier's inputs (sgcls/sgdet)")
    add("-obj_con_loss", choices=("none", "euc_con", "info_nce"), default=None,
        help="object consistency loss on the object features (sgcls/sgdet; none)")
    add("-lambda_con", type=float, default=None, help="weight of the consistency loss (1.0)")
    add("-uncertainty_threshold", type=float, default=None,
        help="pairs with mean aleatoric uncertainty above this are left out of the memory (0 = off)")
    add("-gmm_regularization", type=float, default=None, help="weight of the mean mixture variance in the loss (0)")
    add("-temporal_window", type=int, default=None,
        help="with -tracking True: frames a tracked object attends to, |Δt| < window (0 = the whole video, as the "
             "reference); without (the guide's predcls command): the temporal decoder's sliding window (= -window)")
    add("-rel_loss_weighting", choices=("none", "al", "ep"), default=None,
        help="weight each pair's relation loss by 1 + softmax over the video of its aleatoric|epistemic uncertainty")
    add("-obj_loss_weighting", choices=("none", "al", "ep"), default=None,
        help="weight each object's classification loss the same way (needs -obj_head gmm)")
    add("-rel_head", choices=("gmm", "linear"), default=None, help="relation heads: mixture of Gaussians (gmm)")
    add("-obj_head", choices=("linear", "gmm"), default=None, help="object classifier head (sgcls/sgdet; linear)")
    add("-rel_mem_compute", choices=("joint", "seperate", "separate", "none"), default=None,
        help="one attention over the 26 predicate prototypes (joint), one per category averaged (seperate), or none")
    add("-obj_mem_compute", type=str2bool, nargs="?", const=True, default=None,
        help="object-class prototypes attended by the object features (sgcls/sgdet)")
    add("-mlm", type=str2bool, nargs="?", const=True, default=None,
        help="multi-label margin loss for spatial/contacting instead of TEMPURA's default BCE")
    stket = parser.add_argument_group("STKET (-model stket only)")
    add = stket.add_argument
    add("-enc_layer_num", type=int, default=None, help="spatial encoder layers (2)")
    add("-dec_layer_num", type=int, default=None, help="temporal decoder layers (2)")
    add("-N_layer", type=int, default=None, help="ensemble decoder layers (1)")
    add("-window_size", type=int, default=None, help="frames the ensemble decoder spans (4)")
    add("-pred_contact_threshold", type=float, default=None,
        help="previous-frame contacting predictions at or above this select the temporal prior (0.8; test 1.0)")
    for name, what in (("use_spatial_prior", "add the spatial prior to queries and keys"),
                       ("spatial_prior_loss", "loss of the spatial-prior-only heads"),
                       ("use_temporal_prior", "add the temporal prior to queries and keys"),
                       ("temporal_prior_loss", "loss of the temporal-prior-only heads")):
        add(f"-{name}", type=str2bool, nargs="?", const=True, default=None, help=what + " (off)")
    add("-prior_path", default=None, help="TrainPrior.json (default <data_path>/TrainPrior.json; computed "
        "from the training annotations when missing)")
    scenellm = parser.add_argument_group("SceneLLM (-model scenellm only)")
    add = scenellm.add_argument
    add("-scenellm_stage", "-scenellm_training_stage", choices=("vqvae", "stage1", "stage2"), default=None,
        help="vqvae: the VQ-VAE alone; stage1: scene tokens + predictor (LLM frozen); stage2: + LoRA. Not given: "
             "train.py runs vqvae, then stage1 (stage2 when -llm_lr or -freeze_llm_epochs is given)")
    add("-latent_dim", type=int, default=None, help="VQ-VAE latent / scene-token width (m3sgg's -embed_dim; 512)")
    add("-codebook_size", type=int, default=None, help="VQ-VAE codebook entries (512)")
    add("-commitment_cost", type=float, default=None, help="VQ-VAE commitment weight (0.25)")
    add("-llm_name", default=None, help="local folder with a causal LM (transformers format); default: a small "
        "randomly initialised causal LM built from a config")
    add("-lora_r", type=int, default=None, help="LoRA rank (16)")
    add("-lora_alpha", type=float, default=None, help="LoRA alpha (32)")
    add("-lora_dropout", type=float, default=None, help="LoRA dropout (0.05)")
    add("-ot_step", type=int, default=None, help="optimal-transport codebook update every N training steps (512)")
    add("-vqvae_epochs", type=int, default=None, help="epochs of -scenellm_stage vqvae (5; replaces -epochs)")
    add("-stage1_iterations", type=int, default=None, help="optimizer steps of stage1 (0 = -epochs decides)")
    add("-stage2_iterations", type=int, default=None, help="optimizer steps of stage2 (0 = -epochs decides)")
    add("-alpha_obj", type=float, default=None, help="weight of the object loss (1.0)")
    add("-alpha_rel", type=float, default=None, help="weight of the relation losses (1.0)")
    add("-llm_lr", type=float, default=None, help="learning rate of the LoRA adapters in stage2 (2e-5)")
    add("-freeze_llm_epochs", type=int, default=None, help="stage2: LoRA adapters frozen for the first N epochs (0)")


def train_parser() -> argparse.ArgumentParser:
    parser = StrictParser(prog="vidsgg/train.py", allow_abbrev=False, description="Train a VidSGG model.")
    _common(parser)
    add = parser.add_argument
    # Defaults of the training guide's parameter tables (STTran's own: -lr 1e-5 -epochs 10 -weight_decay 0.01
    # -warmup_steps 0 -scheduler plateau -save_freq 1 -eval_freq 1; see the README).
    add("-lr", type=float, default=1e-4, help="AdamW learning rate (STTran: 1e-5)")
    add("-batch_size", type=int, default=1, help="videos per step (per process)")
    add("-epochs", type=int, default=None, help="epochs (100; SceneLLM's vqvae stage: -vqvae_epochs)")
    add("-save_path", default=None, help="run folder (default output/<dataset>/<model>_<mode>_<timestamp>; when "
        "resuming a checkpoint file exactly: its folder)")
    add("-weight_decay", type=float, default=1e-5, help="AdamW weight decay (STTran: 0.01)")
    add("-clip_grad", type=float, default=5.0, help="max gradient norm (0 = no clipping)")
    add("-warmup_steps", type=int, default=1000, help="linear lr warmup over this many optimizer steps (STTran: 0)")
    add("-scheduler", choices=("step", "cosine", "plateau"), default="step",
        help="step: ×0.1 every third of training; cosine: to 0 at the end; plateau (STTran's): ×0.5 when val R@20 "
             "stalls")
    add("-save_freq", type=int, default=10, help="write checkpoint_epoch_N.tar every N epochs (STTran: 1)")
    add("-keep_last", type=int, default=3, help="keep the newest N epoch and step checkpoints (0 = all)")
    add("-save_every_steps", type=int, default=0,
        help="also write a resumable checkpoint_step_N.tar every N optimizer steps (0 = only at epoch ends)")
    add("-eval_freq", type=int, default=5, help="evaluate every N epochs, and after the last (STTran: 1)")
    add("-accumulate_grad_batches", type=int, default=1)
    add("-resume_from", default=None,
        help="'latest' (the newest valid checkpoint in -save_path) or a checkpoint file: same model, mode and "
             "dataset = exact resume; another mode or dataset = its compatible weights only (progressive training, "
             "e.g. predcls -> sgcls, Action Genome -> EASG)")
    add("-init_from", default=None,
        help="start a new run from the weights of FILE: a released reference checkpoint ({'state_dict'} of "
             "STTran/TEMPURA/STKET) or a checkpoint of this project; fresh optimizer and schedule, step 0. With "
             "-resume_from latest: only while the run has no checkpoint of its own")
    add("-allow_config_change", type=str2bool, default=False,
        help="resume exactly although flags that change the training maths (lr, batch size, ...) differ")
    add("-early_stopping_patience", type=int, default=0, help="stop after N evaluations without improvement (0 = off)")
    add("-early_stopping_min_delta", type=float, default=0.0, help="improvement of val R@20 (fraction) that counts")
    add("-bce_loss", type=str2bool, nargs="?", const=True, default=False,
        help="BCE instead of multi-label margin for spatial/contacting")
    add("-num_workers", type=int, default=0)
    add("-curriculum", choices=("none", "easy_to_hard"), default="none",
        help="easy_to_hard: train on the easiest videos first (fewest relations per frame), widening the set at "
             "each -curriculum_epochs boundary")
    add("-curriculum_epochs", default=None,
        help="comma-separated epoch boundaries of the curriculum, e.g. 2,4 (default: thirds of -epochs)")
    add("-profile", type=str2bool, default=False, help="torch.profiler trace into <run>/profile")
    add("-deterministic", type=str2bool, default=False, help="deterministic kernels (bitwise-exact resume)")
    return parser


def test_parser() -> argparse.ArgumentParser:
    parser = StrictParser(prog="vidsgg/test.py", allow_abbrev=False, description="Evaluate a VidSGG model.")
    _common(parser)
    # A test over part of the split is not the split's number: an unreadable video is an error unless asked.
    parser.set_defaults(strict_data=True)
    parser.add_argument("-model_path", default=None, help="checkpoint to evaluate")
    parser.add_argument("-random_init", type=str2bool, default=False,
                        help="evaluate the untrained model (the random-weight baseline) instead of -model_path")
    parser.add_argument("-output", default=None, help="folder for metrics.json (default: next to -model_path)")
    return parser
