"""Compare the VAE's continuous latent with LAQ's discrete latent actions on the same frames.

    # one image (and the frame after it):
    python vae_latent/compare_with_laq.py --vae VAE.pt --laq LAQ.pt --image a.jpg [--next_image b.jpg] --output DIR
    # many frame pairs from a data folder (frames/<id>/img_XXXXX.jpg or LAQ's scenes.csv layout):
    python vae_latent/compare_with_laq.py --vae VAE.pt --laq LAQ.pt --frames_dir DATA [--offset K] --output DIR

Writes DIR/comparison.png (inputs, outputs, error maps) and DIR/metrics.json, and prints a table: MSE / PSNR /
SSIM on [0, 1] images (data range 1) for the VAE reconstruction of the target frame, LAQ's prediction of it from
the previous frame, and copying the previous frame; latent statistics (VAE mu / sigma / KL / active units, LAQ
code ids and codebook usage). LPIPS is added only when its backbone weights are already on this machine.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from common import checkpoint, metrics
from common.data import image_to_tensor, read_image
from common.viz import colorize, image_grid, save_png, to_uint8
from vae_latent.dataset_sthv2 import discover_videos
from vae_latent.evaluation import ACTIVE_UNIT_THRESHOLD
from vae_latent.vanilla_vae_model import VanillaVAE, build_model, kl_per_dim, to_model_range, to_unit_range

LPIPS_BACKBONE = "alexnet-owt-7be5be79.pth"  # torchvision's AlexNet, which LPIPS (alex) builds on


def load_vae(path: str | os.PathLike, device: torch.device) -> VanillaVAE:
    """A VanillaVAE in eval mode from a vae_latent checkpoint (step_*.pt, vae_best.pt or vae_final.pt)."""
    state = checkpoint.load(path)
    if "model" not in state or "model_params" not in state.get("config", {}):
        raise checkpoint.CheckpointError(f"{path} is not a vae_latent checkpoint (no config.model_params)")
    model = build_model(state["config"]["model_params"])
    model.load_state_dict(state["model"])
    return model.to(device).eval()


def load_laq(path: str | os.PathLike, device: torch.device):
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


def image_metrics(pred01: torch.Tensor, target01: torch.Tensor, lpips=None) -> dict[str, torch.Tensor]:
    """Per-image metrics of (B, 3, H, W) images in [0, 1]: {"mse", "psnr", "ssim"[, "lpips"]} each (B,)."""
    pred01 = pred01.clamp(0, 1)
    values = {"mse": metrics.mse(pred01, target01), "psnr": metrics.psnr(pred01, target01, data_range=1.0),
              "ssim": metrics.ssim(pred01, target01, data_range=1.0)}
    if lpips is not None:
        values["lpips"] = lpips(pred01, target01)
    return values


@torch.no_grad()
def run_models(vae: VanillaVAE, laq, first_paths: list, future_paths: list, device: torch.device) -> dict:
    """Both models on frame pairs. Returns [0, 1] images at each model's size and the latents:
    vae_input/vae_recon (B,3,Sv,Sv), laq_first/laq_future/laq_pred (B,3,Sl,Sl), mu/log_var (B,latent),
    codes (B, L) int64."""
    from laq.inference import predict_next

    laq_size = laq.cfg.image_size
    vae_input = torch.stack([image_to_tensor(read_image(p, vae.image_size)) for p in future_paths]).to(device)
    mu, log_var = vae.encode(to_model_range(vae_input))
    first = torch.stack([image_to_tensor(read_image(p, laq_size)) for p in first_paths]).to(device)
    future = torch.stack([image_to_tensor(read_image(p, laq_size)) for p in future_paths]).to(device)
    prediction = predict_next(laq, first, future)
    return {"vae_input": vae_input, "vae_recon": to_unit_range(vae.decode(mu)), "mu": mu, "log_var": log_var,
            "laq_first": first, "laq_future": future, "laq_pred": prediction.frame.clamp(0, 1),
            "codes": prediction.codes}


def comparison_png(path: Path, outputs: dict, rows: int = 4) -> None:
    """One row per pair: previous frame | target | VAE recon | VAE error | LAQ prediction | LAQ error
    (error maps: mean absolute error over channels, 0 to 0.5, turbo colours)."""
    size = max(outputs["vae_input"].shape[-1], outputs["laq_future"].shape[-1], 128)  # legible when tiny

    def show(image: torch.Tensor) -> np.ndarray:
        return to_uint8(torch.nn.functional.interpolate(image[None], size=(size, size), mode="nearest")[0])

    def error(pred: torch.Tensor, target: torch.Tensor) -> np.ndarray:
        err = (pred - target).abs().mean(0)[None, None]
        return colorize(torch.nn.functional.interpolate(err, size=(size, size), mode="nearest")[0, 0], 0.0, 0.5)

    grid = []
    for i in range(min(rows, outputs["vae_input"].shape[0])):
        grid.append([show(outputs["laq_first"][i]), show(outputs["vae_input"][i]), show(outputs["vae_recon"][i]),
                     error(outputs["vae_recon"][i], outputs["vae_input"][i]), show(outputs["laq_pred"][i]),
                     error(outputs["laq_pred"][i], outputs["laq_future"][i])])
    save_png(path, image_grid(grid))


def frame_pairs(frames_dir: str, offset: int, max_pairs: int) -> list[tuple[Path, Path]]:
    """(frame t, frame min(t + offset, last)) pairs: t = 0 of every video, then further starts, up to max_pairs."""
    videos, _ = discover_videos(frames_dir)
    pairs, start = [], 0
    while len(pairs) < max_pairs and any(len(v.frames) > start for v in videos):
        for video in videos:
            if start < len(video.frames) and len(pairs) < max_pairs:
                pairs.append((video.frames[start], video.frames[min(start + offset, len(video.frames) - 1)]))
        start += max(offset, 1)
    return pairs


def summarise(outputs: list[dict], codebook_size: int, lpips) -> dict[str, float]:
    """Flat metrics over all pairs (means of per-image values) plus latent statistics."""
    cat = {key: torch.cat([o[key] for o in outputs]) for key in outputs[0]}
    result: dict[str, float] = {"pairs": float(cat["vae_input"].shape[0])}
    for name, pred, target in [("vae", cat["vae_recon"], cat["vae_input"]),
                               ("laq", cat["laq_pred"], cat["laq_future"]),
                               ("copy_first", cat["laq_first"], cat["laq_future"])]:
        for metric, values in image_metrics(pred, target, lpips).items():
            result[f"{name}/{metric}"] = values.mean().item()
    mu, log_var = cat["mu"], cat["log_var"]
    kl = kl_per_dim(mu, log_var)
    result.update({"vae/mu_mean": mu.mean().item(), "vae/mu_std": mu.std().item() if mu.numel() > 1 else 0.0,
                   "vae/sigma_mean": log_var.mul(0.5).exp().mean().item(), "vae/kld": kl.sum(1).mean().item(),
                   "vae/dims_with_kl": float((kl.mean(0) > ACTIVE_UNIT_THRESHOLD).sum())})
    if mu.shape[0] > 1:  # active units need several images: Var over images of mu per dimension
        result["vae/active_units"] = float((mu.var(0) > ACTIVE_UNIT_THRESHOLD).sum())
    codes = cat["codes"]
    counts = torch.bincount(codes.reshape(-1), minlength=codebook_size).double()
    probs = counts / counts.sum()
    result.update({"laq/codes_used": float((counts > 0).sum()), "laq/codebook_size": float(codebook_size),
                   "laq/code_perplexity": torch.exp(-(probs[probs > 0] * probs[probs > 0].log()).sum()).item(),
                   "laq/unique_sequences": float(len({tuple(row) for row in codes.tolist()}))})
    return result


def print_table(result: dict[str, float], with_lpips: bool) -> None:
    columns = ["mse", "psnr", "ssim"] + (["lpips"] if with_lpips else [])
    labels = {"vae": "VAE reconstruction of target", "laq": "LAQ prediction of target", "copy_first":
              "copy previous frame (baseline)"}
    print(f"\n{'model (over ' + str(int(result['pairs'])) + ' pair(s))':<34}" + "".join(f"{c:>10}" for c in columns))
    for key, label in labels.items():
        print(f"{label:<34}" + "".join(f"{result[f'{key}/{c}']:>10.4f}" for c in columns))
    print("\nlatent statistics")
    for key, value in result.items():
        if key != "pairs" and key.split("/")[1] not in columns:
            print(f"  {key:<24} {value:.4g}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vae", required=True,
                        help="vae_latent checkpoint (e.g. logs_vae/<name>/checkpoints/vae_final.pt)")
    parser.add_argument("--laq", required=True, help="LAQ checkpoint (e.g. <run>/checkpoints/last.pt)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--image",
                        help="the frame to reconstruct (and LAQ's previous frame when --next_image is given)")
    source.add_argument("--frames_dir", help="data folder: evaluate over many frame pairs")
    parser.add_argument("--next_image", help="the frame after --image; without it LAQ predicts --image from itself")
    parser.add_argument("--offset", type=int, default=None,
                        help="frames between a pair (default: LAQ's training offset)")
    parser.add_argument("--max_pairs", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--output", required=True, help="folder for comparison.png and metrics.json")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    if args.next_image and not args.image:
        parser.error("--next_image goes with --image")
    device = torch.device(args.device)
    vae = load_vae(args.vae, device)
    laq, laq_offset = load_laq(args.laq, device)
    if args.image:
        for path in filter(None, [args.image, args.next_image]):
            if not Path(path).is_file():
                parser.error(f"image not found: {path}")
        if not args.next_image:
            print("No --next_image: LAQ sees --image as both frames (no motion); its error is then a "
                  "reconstruction error, like the VAE's.")
        pairs = [(Path(args.image), Path(args.next_image or args.image))]
    else:
        offset = args.offset if args.offset is not None else laq_offset
        pairs = frame_pairs(args.frames_dir, offset, args.max_pairs)
        print(f"{len(pairs)} frame pairs from {args.frames_dir}, offset {offset}")
    if vae.image_size != laq.cfg.image_size:
        print(f"Note: the VAE works at {vae.image_size}px and LAQ at {laq.cfg.image_size}px; each is scored against "
              "the target resized to its own resolution.")
    lpips = make_lpips(device)
    outputs = []
    for i in range(0, len(pairs), args.batch_size):
        chunk = pairs[i:i + args.batch_size]
        outputs.append(run_models(vae, laq, [a for a, _ in chunk], [b for _, b in chunk], device))
    result = summarise(outputs, laq.cfg.codebook_size, lpips)
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    comparison_png(out_dir / "comparison.png", outputs[0])
    print_table(result, lpips is not None)
    if args.image:
        result["laq/code_ids"] = outputs[0]["codes"][0].tolist()
        print(f"  {'laq/code_ids':<24} {result['laq/code_ids']}")
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"\nWrote {out_dir / 'comparison.png'} (rows: previous | target | VAE | VAE error | LAQ | LAQ error) "
          f"and {out_dir / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
