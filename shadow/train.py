"""Train the light-conditioned single-step rectified-flow shadow generator.

    python shadow/train.py --data_dir DATA --image_size 256 --output_dir runs/shadow
    torchrun --standalone --nproc_per_node=4 shadow/train.py --data_dir DATA ...        # several GPUs
    python shadow/train.py ... --resume_from latest                                    # or a checkpoint path

Writes into --output_dir: training_config.json, training.log, tensorboard/, checkpoint_N.pt (last 3 kept),
latest_model.pt, best_model.pt (highest validation IoU) and metrics.json (latest validation metrics next to the
mean-shadow baseline). Set SHADOW_PROFILE=1 to record a torch.profiler trace under profile/.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from common import checkpoint, dist
from common.amp import autocast, grad_scaler, parse_precision
from common.data import BadSampleCounter, empty_on_any_rank
from common.guard import NonFiniteGuard
from common.log import Writer, setup_logger, write_metrics
from common.preempt import PreemptionHandler
from common.profiler import make_profiler
from common.sched import build_scheduler
from common.seed import seed_everything, set_deterministic
from shadow.data import create_dataloaders
from shadow.evaluation import to_device, validate
from shadow.flow import training_loss
from shadow.metrics import MeanShadow
from shadow.models import BACKBONES, build_model, load_trainable_state, trainable_state
from shadow.viz import sample_grid

SEED = 0
NAN_MESSAGE = "⚠️  NaN/Inf detected in loss!"
CHECKPOINT_PATTERN = r"checkpoint_(\d+)\.pt"
KEEP_CHECKPOINTS = 3
MEAN_SHADOW_SAMPLES = 512  # the baseline's mean map is estimated from this many training samples at most


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_type", choices=["custom", "benchmark"], default="custom")
    parser.add_argument("--data_dir", required=True, help="custom folder, or the benchmark .tar for 'benchmark'")
    parser.add_argument("--image_size", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=2, help="per process")
    parser.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default="bf16",
                        help="autocast dtype; weights stay fp32")
    parser.add_argument("--gradient_checkpointing", action="store_true")
    parser.add_argument("--gradient_accumulation", type=int, default=1)
    parser.add_argument("--max_iterations", type=int, default=150_000, help="optimizer steps")
    parser.add_argument("--save_every", type=int, default=5000)
    parser.add_argument("--eval_every", type=int, default=1000)
    parser.add_argument("--log_every", type=int, default=50)
    parser.add_argument("--resume_from", default=None, help="'latest' (newest checkpoint_N.pt) or a path")
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--warmup_steps", type=int, default=1000)
    parser.add_argument("--num_workers", type=int, default=4)
    parser.add_argument("--backbone", choices=BACKBONES, default="unet")
    parser.add_argument("--pretrained_path", default=None, help="local SDXL folder (unet/, vae/) for --backbone sdxl")
    parser.add_argument("--output_dir", default="./checkpoints")
    args = parser.parse_args(argv)
    for name in ("batch_size", "gradient_accumulation", "max_iterations", "save_every", "eval_every", "log_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    return args


def estimate_mean_shadow(dataset, limit: int) -> torch.Tensor:
    """(1, H, W) mean shadow map of the first `limit` good training samples (the trivial baseline)."""
    mean = MeanShadow()
    for index in range(min(limit, len(dataset))):
        sample = dataset[index]
        if isinstance(sample, dict):
            mean.update(sample["shadow_map"][None])
    return mean.value()


def main(argv: list[str] | None = None) -> dict:
    # ---------------------------------------------------------------- set-up
    args = parse_args(argv)
    info = dist.setup()
    set_deterministic(info.device.type == "cpu")  # exact resume on CPU; CUDA keeps its fast kernels
    seed_everything(SEED, info.rank)
    out = Path(args.output_dir)
    logger = setup_logger(out, name="shadow.train", filename="training.log", packages=("shadow",))
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "training_config.json").write_text(json.dumps(vars(args), indent=2) + "\n")
    writer = Writer(out / "tensorboard")
    precision = parse_precision(args.mixed_precision)
    logger.info("world_size=%d device=%s precision=%s", info.world_size, info.device, precision)

    # ---------------------------------------------------------------- data
    train_loader, val_loader = create_dataloaders(args.dataset_type, args.data_dir, args.batch_size,
                                                  args.num_workers, args.image_size, seed=SEED)
    sampler = train_loader.sampler
    logger.info("train: %d samples, val: %d samples", len(train_loader.dataset), len(val_loader.dataset))

    # ---------------------------------------------------------------- model, optimizer
    model = build_model(args.backbone, args.image_size, args.pretrained_path).to(info.device)
    model.set_gradient_checkpointing(args.gradient_checkpointing)
    params = [p for p in model.parameters() if p.requires_grad]
    logger.info("trainable parameters: %d", sum(p.numel() for p in params))
    optimizer = torch.optim.AdamW(params, lr=args.lr)
    scheduler = build_scheduler(optimizer, "constant", warmup_steps=args.warmup_steps)  # 0 -> lr, then constant
    scaler = grad_scaler(info.device, precision)
    guard = NonFiniteGuard(logger=logger, message=NAN_MESSAGE)
    noise_generator = torch.Generator(info.device).manual_seed(SEED + 1000 * info.rank)
    step, epoch, batches_done, best_iou, mean_shadow = 0, 0, 0, -1.0, None

    path, state = checkpoint.resolve_resume(args.resume_from, out, CHECKPOINT_PATTERN)
    if state is not None:
        load_trainable_state(model, state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        guard.load_state_dict(state["guard"])
        step, epoch, batches_done, best_iou = state["step"], state["epoch"], state["batches_done"], state["best_iou"]
        mean_shadow = state["mean_shadow"]
        checkpoint.set_rng_state(state["rng"][info.rank])
        noise_generator.set_state(state["noise_rng"][info.rank])
        logger.info("Resumed from %s at step %d (epoch %d, batch %d)", path, step, epoch, batches_done)
    if mean_shadow is None:
        mean_shadow = estimate_mean_shadow(train_loader.dataset, MEAN_SHADOW_SAMPLES)
    ddp_model = DDP(model, device_ids=[info.device.index] if info.device.type == "cuda" else None) \
        if info.distributed else model

    def save(names: list[str]) -> None:
        """All ranks take part (RNG states are gathered); rank 0 writes each name atomically."""
        rng_all, noise_all = [checkpoint.rng_state()], [noise_generator.get_state()]
        if info.distributed:
            rng_all, noise_all = [None] * info.world_size, [None] * info.world_size
            torch.distributed.all_gather_object(rng_all, checkpoint.rng_state())
            torch.distributed.all_gather_object(noise_all, noise_generator.get_state())
        if info.is_main:
            state = {"model": trainable_state(model), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "guard": guard.state_dict(),
                     "step": step, "epoch": epoch, "batches_done": batches_done, "best_iou": best_iou,
                     "mean_shadow": mean_shadow, "rng": rng_all, "noise_rng": noise_all, "config": vars(args)}
            for name in names:
                checkpoint.save(out / name, state)
            checkpoint.prune(out, KEEP_CHECKPOINTS, CHECKPOINT_PATTERN)
        dist.barrier()

    def evaluate() -> dict:
        nonlocal best_iou
        metrics, first = validate(ddp_model, val_loader, info.device, precision, mean_shadow)
        metrics["step"] = step
        writer.scalars({k: v for k, v in metrics.items() if k != "step"}, step)
        if first is not None:
            writer.image("val/object|target|prediction|composite", sample_grid(first, first["prediction"]), step)
        write_metrics(out, metrics)
        logger.info("step %d validation: %s", step, ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()
                                                             if k != "step"))
        if metrics["val/iou"] > best_iou:
            best_iou = metrics["val/iou"]
            save(["best_model.pt"])
        return metrics

    # ---------------------------------------------------------------- loop
    bad_samples = BadSampleCounter()
    loss_sum, loss_count, window_start, micro = 0.0, 0, time.time(), 0
    metrics: dict = {}
    optimizer.zero_grad(set_to_none=True)
    profiler = make_profiler(os.environ.get("SHADOW_PROFILE") == "1", out / "profile")
    with PreemptionHandler() as preemption, profiler:
        stop = step >= args.max_iterations
        while not stop:
            sampler.set_epoch(epoch)
            sampler.start_at(batches_done * args.batch_size)  # mid-epoch resume: skip what was already seen
            for batch in train_loader:
                batches_done += 1
                bad_samples.update(batch)
                if empty_on_any_rank(batch):  # all samples unreadable: every rank drops this step together
                    continue
                batch = to_device(batch, info.device)
                micro += 1
                sync = micro % args.gradient_accumulation == 0
                # Gradients are all-reduced only on the last micro-batch of an accumulation window.
                context = ddp_model.no_sync() if info.distributed and not sync else torch.enable_grad()
                with context:
                    with autocast(info.device, precision):
                        loss = training_loss(ddp_model, batch, noise_generator)
                    scaler.scale(loss / args.gradient_accumulation).backward()
                loss_sum, loss_count = loss_sum + loss.detach().float(), loss_count + 1
                if not sync:
                    continue
                scaler.unscale_(optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
                if guard.check(loss, grad_norm, step):
                    scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                profiler.step()

                if step % args.log_every == 0:
                    elapsed = time.time() - window_start
                    logged = {"train/loss": dist.all_reduce_mean(loss_sum / max(loss_count, 1)).item(),
                              "train/lr": scheduler.get_last_lr()[0],
                              "train/it_per_s": args.log_every / max(elapsed, 1e-9),
                              "train/grad_norm": float(grad_norm)}
                    if info.device.type == "cuda":
                        logged["train/gpu_memory_gb"] = torch.cuda.max_memory_allocated(info.device) / 2**30
                    writer.scalars(logged, step)
                    logger.info("step %d/%d %s", step, args.max_iterations,
                                " ".join(f"{k.split('/')[1]}={v:.4g}" for k, v in logged.items()))
                    loss_sum, loss_count, window_start = 0.0, 0, time.time()
                if step % args.eval_every == 0 or step == args.max_iterations:
                    metrics = evaluate()
                stop = preemption.stop_requested() or step >= args.max_iterations
                if step % args.save_every == 0 or stop:
                    save([f"checkpoint_{step}.pt", "latest_model.pt"])
                if stop:
                    break
            else:
                bad_samples.end_epoch(logger, epoch)
                epoch, batches_done = epoch + 1, 0
        if preemption.received is not None:
            logger.info("Preempted: saved at step %d; resume with --resume_from latest.", step)

    if not metrics and step > 0 and preemption.received is None:
        metrics = evaluate()
    writer.close()
    dist.cleanup()
    return metrics


if __name__ == "__main__":
    main()
