"""Train the light-conditioned single-step rectified-flow shadow generator.

    python shadow/train.py --data_dir DATA --image_size 256 --output_dir runs/shadow
    torchrun --standalone --nproc_per_node=4 shadow/train.py --data_dir DATA ...        # several GPUs
    python shadow/train.py ... --resume_from latest                                    # or a checkpoint path

Writes into --output_dir: training_config.json, training.log, tensorboard/, checkpoint_N.pt (the last
--keep_checkpoints kept), latest_model.pt, best_model.pt (highest validation IoU) and metrics.json (latest
validation metrics next to the mean-shadow and per-light baselines). --profile records a torch.profiler trace
under profile/.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from common import checkpoint, dist
from common.amp import autocast, grad_scaler, parse_precision
from common.data import BadSampleCounter, empty_on_any_rank
from common.guard import NonFiniteGuard
from common.log import Writer, progress, setup_logger, write_metrics
from common.optim import closes_accumulation_window
from common.preempt import PreemptionHandler
from common.profiler import make_profiler
from common.sched import build_scheduler
from common.seed import seed_everything, set_deterministic
from shadow.baselines import PerLightBaseline
from shadow.data import create_dataloaders
from shadow.evaluation import score_baselines, to_device, validate
from shadow.flow import flow_losses
from shadow.metrics import MeanShadow
from shadow.models import build_model, load_trainable_state, trainable_state
from shadow.options import parse_args
from shadow.viz import sample_grid

NAN_MESSAGE = "⚠️  NaN/Inf detected in loss!"
CHECKPOINT_PATTERN = r"checkpoint_(\d+)\.pt"
# Flags whose change between a run and its resumption breaks the exact continuation (refused unless
# --allow_config_change); a change of any other flag is only logged. --max_iterations may grow when the lr
# schedule does not depend on it (constant).
EXACT_ON_RESUME = ("dataset_type", "image_size", "batch_size", "backbone", "pretrained_path", "mixed_precision",
                   "gradient_accumulation", "lr", "warmup_steps", "lr_schedule", "grad_clip", "penumbra_weight",
                   "seed")
MEAN_SHADOW_SAMPLES = 512  # the baseline's mean map is estimated from this many training samples at most


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
    args = parse_args(argv, description=__doc__)
    info = dist.setup()
    if info.device.type == "cpu" and args.mixed_precision == "fp16":
        raise SystemExit("--mixed_precision fp16 needs a GPU (autocast fp16 is not run on CPU); use bf16 or no.")
    set_deterministic(info.device.type == "cpu")  # exact resume on CPU; CUDA keeps its fast kernels
    seed_everything(args.seed, info.rank)
    out = Path(args.output_dir)
    resuming = checkpoint.parse_resume_spec(args.resume_from)[0] != "fresh"
    checkpoint.check_fresh_run_folder(out, resuming)  # a fresh run never mixes its files with an older run's
    logger = setup_logger(out, name="shadow.train", filename="training.log", packages=("shadow",))
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        for stale in checkpoint.remove_stale_temp_files(out):  # left by a save that was killed
            logger.info("Removed %s, the temporary file of an interrupted save.", stale)
        (out / "training_config.json").write_text(json.dumps(vars(args), indent=2) + "\n")
    writer = Writer(out / "tensorboard")
    precision = parse_precision(args.mixed_precision)
    logger.info("world_size=%d device=%s precision=%s lr=%g", info.world_size, info.device, precision, args.lr)
    logger.info("effective batch size: %d (%d per process x %d accumulation x %d processes)",
                args.batch_size * args.gradient_accumulation * info.world_size, args.batch_size,
                args.gradient_accumulation, info.world_size)

    # ---------------------------------------------------------------- data
    train_loader, val_loader = create_dataloaders(args.dataset_type, args.data_dir, args.batch_size,
                                                  args.num_workers, args.image_size, seed=args.seed)
    sampler = train_loader.sampler
    logger.info("train: %d samples, val: %d samples", len(train_loader.dataset), len(val_loader.dataset))

    # ---------------------------------------------------------------- model, optimizer
    model = build_model(args.backbone, args.image_size, args.pretrained_path).to(info.device)
    model.set_gradient_checkpointing(args.gradient_checkpointing)
    params = [p for p in model.parameters() if p.requires_grad]
    logger.info("trainable parameters: %d", sum(p.numel() for p in params))
    optimizer = torch.optim.AdamW(params, lr=args.lr)
    scheduler = build_scheduler(optimizer, args.lr_schedule, warmup_steps=args.warmup_steps,
                                total_steps=args.max_iterations)
    scaler = grad_scaler(info.device, precision)
    guard = NonFiniteGuard(logger=logger, message=NAN_MESSAGE)
    noise_generator = torch.Generator(info.device).manual_seed(args.seed + 1000 * info.rank)
    step, epoch, batches_done, best_iou, mean_shadow, baseline_metrics = 0, 0, 0, -1.0, None, None

    path, state = checkpoint.resolve_resume(args.resume_from, out, CHECKPOINT_PATTERN)
    if state is not None:
        ignore = ["resume_from", "output_dir"] + (["max_iterations"] if args.lr_schedule == "constant" else [])
        checkpoint.check_resume_config(state.get("config"), vars(args), EXACT_ON_RESUME, args.allow_config_change,
                                       ignore=ignore, logger=logger)
        load_trainable_state(model, state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        guard.load_state_dict(state["guard"])
        step, epoch, batches_done, best_iou = state["step"], state["epoch"], state["batches_done"], state["best_iou"]
        mean_shadow, baseline_metrics = state["mean_shadow"], state.get("baseline_metrics")
        checkpoint.restore_rng_states(state["rng"], {"noise": noise_generator})
        logger.info("Resumed from %s at step %d (epoch %d, batch %d)", path, step, epoch, batches_done)
    if mean_shadow is None:
        mean_shadow = estimate_mean_shadow(train_loader.dataset, MEAN_SHADOW_SAMPLES)
    if baseline_metrics is None:  # the baselines do not train: score them once per run
        by_light = PerLightBaseline(train_loader.dataset)
        baseline_metrics = score_baselines(val_loader, info.device, {
            "baseline": lambda batch: mean_shadow.expand_as(batch["shadow_map"]),
            "baseline_light": lambda batch: by_light(batch["theta"], batch["phi"], batch["size"])})
        logger.info("baselines on validation: %s", ", ".join(f"{k}={v:.4f}" for k, v in baseline_metrics.items()))
    ddp_model = DDP(model, device_ids=[info.device.index] if info.device.type == "cuda" else None) \
        if info.distributed else model

    def save(names: list[str]) -> None:
        """All ranks take part (RNG states are gathered); rank 0 writes each name atomically and prunes the
        numbered checkpoints of this run to the newest --keep_checkpoints (never the one just written)."""
        rng_all = checkpoint.gather_rng_states({"noise": noise_generator})
        if info.is_main:
            state = {"model": trainable_state(model), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "guard": guard.state_dict(),
                     "step": step, "epoch": epoch, "batches_done": batches_done, "best_iou": best_iou,
                     "mean_shadow": mean_shadow, "baseline_metrics": baseline_metrics, "rng": rng_all,
                     "config": vars(args)}
            for name in names:
                checkpoint.save(out / name, state)
            checkpoint.prune(out, args.keep_checkpoints, CHECKPOINT_PATTERN, keep=[out / name for name in names])
        dist.barrier()

    def evaluate() -> dict:
        nonlocal best_iou
        metrics, first = validate(ddp_model, val_loader, info.device, precision)
        writer.scalars(metrics, step)
        metrics.update(baseline_metrics, step=step)
        if first is not None:
            writer.image("val/object|target|prediction|composite", sample_grid(first, first["prediction"]), step)
        write_metrics(out, metrics)
        logger.info("step %d validation: %s", step, ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()
                                                             if k.startswith("val/")))
        if metrics["val/iou"] > best_iou:
            best_iou = metrics["val/iou"]
            save(["best_model.pt"])
        return metrics

    # ---------------------------------------------------------------- loop
    # Gradient accumulation: a window is `--gradient_accumulation` consecutive non-empty micro-batches, and it may
    # span an epoch boundary (the last micro-batches of an epoch and the first of the next make one step), so every
    # sample counts exactly once and every step averages the same number of micro-batches. Checkpoints are taken
    # only between windows, so a resume never sees half a window.
    bad_samples = BadSampleCounter()
    window = {"loss": 0.0, "loss_t1": 0.0, "count": 0, "count_t1": 0, "start": time.time()}
    micro, metrics = 0, {}
    optimizer.zero_grad(set_to_none=True)
    bar = progress(total=args.max_iterations, initial=step, desc="train")
    with PreemptionHandler() as preemption, make_profiler(args.profile, out / "profile") as profiler:
        stop = step >= args.max_iterations
        while not stop:
            sampler.set_epoch(epoch)
            sampler.start_at(batches_done * args.batch_size)  # mid-epoch resume: skip what was already seen
            train_loader.generator.manual_seed(args.seed + epoch)  # worker seeds per epoch, not per iterator made
            for batch in train_loader:
                batches_done += 1
                bad_samples.update(batch)
                if empty_on_any_rank(batch):  # all samples unreadable: every rank drops this step together
                    continue
                batch = to_device(batch, info.device)
                micro += 1
                sync = closes_accumulation_window(micro, args.gradient_accumulation)
                # Gradients are all-reduced only on the last micro-batch of an accumulation window.
                context = ddp_model.no_sync() if info.distributed and not sync else torch.enable_grad()
                with context:
                    with autocast(info.device, precision):
                        per_sample, t = flow_losses(ddp_model, batch, noise_generator,
                                                    penumbra_weight=args.penumbra_weight)
                        loss = per_sample.mean()
                    scaler.scale(loss / args.gradient_accumulation).backward()
                at_one = t == 1  # the one-step loss: the guide's "final loss < 0.01" is about this
                window["loss"] += loss.detach().float()
                window["loss_t1"] += per_sample.detach().float()[at_one].sum()
                window["count"], window["count_t1"] = window["count"] + 1, window["count_t1"] + at_one.sum()
                if not sync:
                    continue
                scaler.unscale_(optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(params, args.grad_clip or float("inf"))
                if guard.check(loss, grad_norm, step):
                    scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                profiler.step()
                bar.update(1)

                if step % args.log_every == 0:
                    logged = log_window(window, args.log_every, scheduler.get_last_lr()[0], grad_norm, info)
                    writer.scalars(logged, step)
                    logger.info("step %d/%d %s", step, args.max_iterations,
                                " ".join(f"{k.split('/')[1]}={v:.4g}" for k, v in logged.items()))
                    bar.set_postfix(loss=f"{logged['train/loss']:.4f}", loss_t1=f"{logged['train/loss_t1']:.4f}")
                    window = {"loss": 0.0, "loss_t1": 0.0, "count": 0, "count_t1": 0, "start": time.time()}
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
    bar.close()

    if not metrics and step > 0 and preemption.received is None:
        metrics = evaluate()
    writer.close()
    dist.cleanup()
    return metrics


def log_window(window: dict, steps: int, lr: float, grad_norm: torch.Tensor, info) -> dict:
    """The logged scalars of one log window: the mean flow loss over its micro-batches, the mean loss of its
    samples drawn at t = 1 (averaged over ranks), the lr, it/s and the last gradient norm."""
    sums = dist.all_reduce_sum_(torch.stack([torch.as_tensor(window[k], dtype=torch.float32, device=info.device)
                                             for k in ("loss", "count", "loss_t1", "count_t1")]))
    logged = {"train/loss": (sums[0] / sums[1].clamp_min(1)).item(),
              "train/loss_t1": (sums[2] / sums[3].clamp_min(1)).item(),
              "train/lr": lr, "train/it_per_s": steps / max(time.time() - window["start"], 1e-9),
              "train/grad_norm": float(grad_norm)}
    if info.device.type == "cuda":
        logged["train/gpu_memory_gb"] = torch.cuda.max_memory_allocated(info.device) / 2**30
    return logged


if __name__ == "__main__":
    main()
