"""Compare the VAE's continuous latent with LAQ's discrete latent actions on the same frames, beside the cheap
baselines every number must beat.

    # one image (and the frame after it):
    python compare_with_laq.py --vae VAE.pt --laq LAQ_RUN/checkpoints/last.pt --image a.jpg [--next_image b.jpg]
    # frame pairs of a data folder's validation videos (frames/<id>/img_XXXXX.jpg or LAQ's scenes.csv layout):
    python compare_with_laq.py --vae VAE.pt --laq LAQ_RUN --frames_dir DATA [--split val] [--offset K]

Writes OUTPUT/comparison.png (titled columns, each output's MSE, error maps with a colour bar) and
OUTPUT/metrics.json (default OUTPUT: comparison_results), and prints a table: MSE / PSNR / SSIM on [0, 1] images
(data range 1, means of per-image values, the same code for every row) for the VAE reconstruction of the target
frame, PCA with as many components as the VAE's latent and the mean image (both fitted on training frames), LAQ's
prediction of the target from the previous frame, and copying the previous frame (only when there is one); the
parameters and forward FLOPs per frame of both models; latent statistics (VAE mu / sigma / KL / active units, LAQ
code usage). LPIPS is added only when its backbone weights are already on this machine.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from common import checkpoint
from common.data import image_to_tensor, read_image
from vae_latent.baselines import fit_baselines
from vae_latent.comparison_figure import Cell, save_comparison, show_error, show_image
from vae_latent.dataset_sthv2 import Video, discover_videos, split_videos
from vae_latent.evaluation import ACTIVE_UNIT_THRESHOLD, image_metrics
from vae_latent.vanilla_vae_model import VanillaVAE, build_model, kl_per_dim, to_model_range, to_unit_range

LPIPS_BACKBONE = "alexnet-owt-7be5be79.pth"  # torchvision's AlexNet, which LPIPS (alex) builds on
LAQ_LAYOUT = ("LAQ writes its checkpoints to <run folder>/checkpoints/last.pt (and step_NNNNNNN.pt); the run folder "
              "is hydra.run.dir, by default runs/laq/<experiment_name>/<date>_<time> under the folder LAQ was "
              "started from")
ROWS = {"vae": "VAE reconstruction of target", "pca": "PCA-{k} of target (baseline)",
        "mean_image": "mean training image (baseline)", "laq": "LAQ prediction of target",
        "copy_previous": "copy previous frame (baseline)"}


def load_vae(path: str | os.PathLike, device: torch.device) -> tuple[VanillaVAE, dict]:
    """A VanillaVAE in eval mode from a vae_latent checkpoint (step_*.pt, vae_best.pt or vae_final.pt), and the
    config it was trained with."""
    state = checkpoint.load(path)
    if "model" not in state or "model_params" not in state.get("config", {}):
        raise checkpoint.CheckpointError(f"{path} is not a vae_latent checkpoint (no config.model_params)")
    model = build_model(state["config"]["model_params"])
    model.load_state_dict(state["model"])
    return model.to(device).eval(), state["config"]


def laq_checkpoint_candidates() -> list[Path]:
    """LAQ checkpoints on this machine, newest first: last.pt of the run folders under ./runs/laq and laq/runs/laq."""
    roots = {Path("runs/laq").resolve(), (Path(__file__).resolve().parents[1] / "laq" / "runs" / "laq")}
    found = [p for root in roots if root.is_dir() for p in root.glob("**/checkpoints/last.pt")]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def resolve_laq_checkpoint(path: str) -> Path:
    """A LAQ checkpoint file from --laq: the file itself, or a LAQ run folder (its checkpoints/last.pt), or its
    checkpoints/ folder. Raises FileNotFoundError saying where LAQ writes and which checkpoints exist here."""
    given = Path(path)
    for candidate in (given, given / "checkpoints" / "last.pt", given / "last.pt"):
        if candidate.is_file():
            return candidate
    found = laq_checkpoint_candidates()
    listed = ("; found here: " + ", ".join(map(str, found[:3]))) if found else \
        "; none found under runs/laq or laq/runs/laq (train LAQ first: laq/scripts/2_train_laq.py)"
    raise FileNotFoundError(f"LAQ checkpoint not found: {path}. {LAQ_LAYOUT}. Pass that file (or the run folder) "
                            f"as --laq{listed}")


def load_laq(path: Path, device: torch.device):
    """LAQ's model through its own loading API (laq/inference.py), and its default pair offset."""
    from laq.inference import load_model

    model = load_model(path, device=device)
    offsets = checkpoint.load(path).get("config", {}).get("data", {}).get("offsets") or [1]
    return model, int(offsets[0])


def make_lpips(device: torch.device):
    """An LPIPS function on [0, 1] images, or None (with the reason printed once) when it cannot run offline."""
    hub = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints"
    if not (hub / LPIPS_BACKBONE).is_file():
        print(f"LPIPS skipped: its AlexNet backbone weights are not at {hub / LPIPS_BACKBONE} "
              "(this tool never downloads them).")
        return None
    try:
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity
    except ImportError as exc:
        print(f"LPIPS skipped: {exc}")
        return None
    lpips = LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=True, reduction="none").to(device)
    return lambda pred, target: lpips(pred.clamp(0, 1), target).reshape(-1)


# ---------------------------------------------------------------- frames

def split_of(frames_dir: str, vae_config: dict, split: str) -> tuple[list[Video], list[Video]]:
    """(videos to evaluate, training videos) of `frames_dir`, split as the VAE's training split it: the official
    label files next to the data when present, else the hash of the video id with the VAE's val_fraction."""
    videos, _ = discover_videos(frames_dir)
    train, val, how = split_videos(videos, frames_dir, None, vae_config["data_params"]["val_fraction"])
    chosen = {"val": val, "train": train, "all": videos}[split]
    print(f"{len(chosen)} {split} videos of {len(videos)} in {frames_dir} (split by {how})")
    if not chosen:
        raise ValueError(f"The {split} split of {frames_dir} is empty (split by {how}); use --split all, or a "
                         "folder with more videos")
    return chosen, train


def frame_pairs(videos: list[Video], offset: int, max_pairs: int) -> list[tuple[Path, Path]]:
    """(frame t, frame t + offset) pairs: t = 0 of every video, then t = offset, 2 offset, ... in turn, up to
    max_pairs. Videos with fewer than offset + 1 frames have no such pair and are skipped (and counted)."""
    usable = [v for v in videos if len(v.frames) > offset]
    if len(usable) < len(videos):
        print(f"Skipped {len(videos) - len(usable)} video(s) with fewer than offset + 1 = {offset + 1} frames")
    pairs, start = [], 0
    while len(pairs) < max_pairs and any(start + offset < len(v.frames) for v in usable):
        for video in usable:
            if start + offset < len(video.frames) and len(pairs) < max_pairs:
                pairs.append((video.frames[start], video.frames[start + offset]))
        start += offset
    return pairs


def load_images(paths: list[Path], size: int, device: torch.device) -> torch.Tensor:
    return torch.stack([image_to_tensor(read_image(p, size)) for p in paths]).to(device)


# ---------------------------------------------------------------- models

@torch.no_grad()
def run_models(vae: VanillaVAE, laq, baselines: dict, first_paths: list, future_paths: list,
               device: torch.device) -> dict:
    """Both models (and the baselines) on frame pairs. Returns [0, 1] images at each model's size:
    target/vae/pca/mean_image (B,3,Sv,Sv), laq_first/laq_target/laq (B,3,Sl,Sl); mu/log_var (B, latent),
    codes (B, L) int64."""
    from laq.inference import predict_next

    target = load_images(future_paths, vae.image_size, device)
    mu, log_var = vae.encode(to_model_range(target))
    first = load_images(first_paths, laq.cfg.image_size, device)
    laq_target = load_images(future_paths, laq.cfg.image_size, device)
    prediction = predict_next(laq, first, laq_target)
    return {"target": target, "vae": to_unit_range(vae.decode(mu)),
            **{name: b.reconstruct(target) for name, b in baselines.items()},
            "mu": mu, "log_var": log_var, "laq_first": first, "laq_target": laq_target,
            "laq": prediction.frame.clamp(0, 1), "codes": prediction.codes}


@torch.no_grad()
def model_cost(vae: VanillaVAE, laq, device: torch.device) -> dict[str, float]:
    """Parameters and forward GFLOPs per frame (torch's FLOP counter, 2 FLOPs per multiply-add): the VAE
    reconstructing one frame (encode + decode mu), LAQ predicting one frame from a pair."""
    from laq.inference import predict_next

    cost = {}
    frame = torch.rand(1, 3, vae.image_size, vae.image_size, device=device)
    with FlopCounterMode(display=False) as counter:
        vae(to_model_range(frame), sample=False)
    cost.update({"vae/params": float(sum(p.numel() for p in vae.parameters())),
                 "vae/gflops_per_frame": counter.get_total_flops() / 1e9})
    frame = torch.rand(1, 3, laq.cfg.image_size, laq.cfg.image_size, device=device)
    with FlopCounterMode(display=False) as counter:
        predict_next(laq, frame, frame)
    cost.update({"laq/params": float(sum(p.numel() for p in laq.parameters())),
                 "laq/gflops_per_frame": counter.get_total_flops() / 1e9})
    return cost


def summarise(outputs: list[dict], rows: list[str], codebook_size: int, lpips) -> dict[str, float]:
    """Flat metrics over all pairs (means of per-image values) plus latent statistics."""
    cat = {key: torch.cat([o[key] for o in outputs]) for key in outputs[0]}
    result: dict[str, float] = {"pairs": float(cat["target"].shape[0])}
    targets = {"laq": cat["laq_target"], "copy_previous": cat["laq_target"]}
    predictions = {**cat, "copy_previous": cat["laq_first"]}
    for row in rows:
        pred, target = predictions[row], targets.get(row, cat["target"])
        values = image_metrics(pred, target)
        if lpips is not None:
            values["lpips"] = lpips(pred, target)
        result.update({f"{row}/{metric}": v.mean().item() for metric, v in values.items()})
    mu, log_var = cat["mu"], cat["log_var"]
    kl = kl_per_dim(mu, log_var)
    result.update({"vae/mu_mean": mu.mean().item(), "vae/mu_std": mu.std().item() if mu.numel() > 1 else 0.0,
                   "vae/sigma_mean": log_var.mul(0.5).exp().mean().item(), "vae/kld": kl.sum(1).mean().item(),
                   "vae/dims_with_kl": float((kl.mean(0) > ACTIVE_UNIT_THRESHOLD).sum())})
    if mu.shape[0] > 1:  # active units need several images: Var over images of mu per dimension
        result["vae/active_units"] = float((mu.var(0) > ACTIVE_UNIT_THRESHOLD).sum())
    counts = torch.bincount(cat["codes"].reshape(-1), minlength=codebook_size).double()
    probs = counts[counts > 0] / counts.sum()
    result.update({"laq/codes_used": float((counts > 0).sum()), "laq/codebook_size": float(codebook_size),
                   "laq/code_perplexity": torch.exp(-(probs * probs.log()).sum()).item(),
                   "laq/unique_sequences": float(len({tuple(r) for r in cat["codes"].tolist()}))})
    return result


def figure(path: Path, out: dict, rows: list[str], pca_k: int, with_previous: bool, n_rows: int = 4) -> None:
    """comparison.png: one row per pair; columns [previous] | target | each output and its error map."""
    size = max(out["target"].shape[-1], out["laq_target"].shape[-1], 96)  # legible when tiny
    outputs = [r for r in ("vae", "pca", "laq") if r in rows]
    labels = {"vae": "VAE", "pca": f"PCA-{pca_k}", "laq": "LAQ"}
    titles = (["previous"] if with_previous else []) + ["target"]
    for name in outputs:
        titles += [labels[name], f"{labels[name]} error"]
    grid = []
    for i in range(min(n_rows, out["target"].shape[0])):
        row = ([Cell(show_image(out["laq_first"][i], size))] if with_previous else []) + \
              [Cell(show_image(out["target"][i], size))]
        for name in outputs:
            target = out["laq_target"][i] if name == "laq" else out["target"][i]
            mse = (out[name][i].clamp(0, 1) - target).pow(2).mean().item()
            row += [Cell(show_image(out[name][i], size), f"MSE {mse:.4f}"), Cell(show_error(out[name][i], target, size))]
        grid.append(row)
    save_comparison(path, titles, grid, size)


def print_table(result: dict[str, float], rows: list[str], pca_k: int, with_lpips: bool) -> None:
    columns = ["mse", "psnr", "ssim"] + (["lpips"] if with_lpips else [])
    print(f"\n{'over ' + str(int(result['pairs'])) + ' frame(s)':<36}" + "".join(f"{c:>10}" for c in columns))
    for row in rows:
        print(f"{ROWS[row].format(k=pca_k):<36}" + "".join(f"{result[f'{row}/{c}']:>10.4f}" for c in columns))
    print("\nmodel size and cost")
    for name in ("vae", "laq"):
        print(f"  {name.upper():<4} {int(result[f'{name}/params']):>13,} parameters, "
              f"{result[f'{name}/gflops_per_frame']:.3g} GFLOPs per frame")
    print("\nlatent statistics")
    for key, value in result.items():
        if key.split("/")[-1] not in columns + ["params", "gflops_per_frame"] and "/" in key:
            print(f"  {key:<24} {value:.4g}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vae", required=True,
                        help="vae_latent checkpoint (e.g. logs_vae/<name>/checkpoints/vae_final.pt)")
    parser.add_argument("--laq", required=True, help="LAQ checkpoint (<LAQ run>/checkpoints/last.pt) or run folder")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--image",
                        help="the frame to reconstruct (and LAQ's previous frame when --next_image is given)")
    source.add_argument("--frames_dir", help="data folder: evaluate over many frame pairs of its videos")
    parser.add_argument("--next_image", help="the frame after --image; without it LAQ predicts --image from itself")
    parser.add_argument("--split", choices=["val", "train", "all"], default="val",
                        help="--frames_dir videos to evaluate: the VAE's validation split (default), train, all")
    parser.add_argument("--offset", type=int, default=None,
                        help="frames between a pair (default: LAQ's training offset)")
    parser.add_argument("--max_pairs", type=int, default=64)
    parser.add_argument("--baseline_frames", type=int, default=1024,
                        help="training frames that fit the PCA and mean-image baselines (0: no baselines)")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--output", default="comparison_results", help="folder for comparison.png, metrics.json")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    if args.next_image and not args.image:
        parser.error("--next_image goes with --image")
    if args.offset is not None and args.offset < 1:
        parser.error(f"--offset must be at least 1, got {args.offset}")
    try:
        laq_path = resolve_laq_checkpoint(args.laq)
    except FileNotFoundError as exc:
        parser.error(str(exc))
    device = torch.device(args.device)
    vae, vae_config = load_vae(args.vae, device)
    laq, laq_offset = load_laq(laq_path, device)

    # ---- frame pairs, and the training frames the baselines are fitted on
    if args.image:
        for path in filter(None, [args.image, args.next_image]):
            if not Path(path).is_file():
                parser.error(f"image not found: {path}")
        if not args.next_image:
            print("No --next_image: LAQ sees --image as both frames (no motion); its error is then a "
                  "reconstruction error, like the VAE's, and there is no previous frame to copy.")
        pairs = [(Path(args.image), Path(args.next_image or args.image))]
        train_source = vae_config["data_params"]["data_path"]  # the VAE's own training data, when it is here
        train_videos = split_of(train_source, vae_config, "train")[1] if Path(train_source).is_dir() else []
        if args.baseline_frames and not train_videos:
            print(f"Baselines skipped: the VAE's training data {train_source} is not on this machine "
                  "(use --frames_dir to fit them on a data folder's training videos).")
    else:
        offset = args.offset if args.offset is not None else laq_offset
        videos, train_videos = split_of(args.frames_dir, vae_config, args.split)
        pairs = frame_pairs(videos, offset, args.max_pairs)
        if not pairs:
            parser.error(f"no frame pairs {offset} apart in the {args.split} videos of {args.frames_dir}")
        print(f"{len(pairs)} frame pairs, offset {offset}")
    baselines = {}
    if args.baseline_frames and train_videos:
        baselines = fit_baselines([v.frames for v in train_videos], vae.image_size, vae.latent_dim,
                                  args.baseline_frames, seed=0)
        print(f"Baselines fitted on {min(args.baseline_frames, sum(len(v.frames) for v in train_videos))} "
              f"training frames: PCA with {baselines['pca'].k} components, mean image")
    if vae.image_size != laq.cfg.image_size:
        print(f"Note: the VAE works at {vae.image_size}px and LAQ at {laq.cfg.image_size}px; each is scored against "
              "the target resized to its own resolution.")
    with_previous = not args.image or bool(args.next_image)
    rows = ["vae", *baselines, "laq"] + (["copy_previous"] if with_previous else [])

    # ---- run, score, write
    lpips = make_lpips(device)
    outputs = []
    for i in range(0, len(pairs), args.batch_size):
        chunk = pairs[i:i + args.batch_size]
        outputs.append(run_models(vae, laq, baselines, [a for a, _ in chunk], [b for _, b in chunk], device))
    result = summarise(outputs, rows, laq.cfg.codebook_size, lpips)
    result.update(model_cost(vae, laq, device))
    pca_k = baselines["pca"].k if "pca" in baselines else 0
    if pca_k:
        result["pca/components"] = float(pca_k)
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    figure(out_dir / "comparison.png", outputs[0], rows, pca_k, with_previous)
    print_table(result, rows, pca_k, lpips is not None)
    if args.image:
        result["laq/code_ids"] = outputs[0]["codes"][0].tolist()
        print(f"  {'laq/code_ids':<24} {result['laq/code_ids']}")
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"\nWrote {out_dir / 'comparison.png'} and {out_dir / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
