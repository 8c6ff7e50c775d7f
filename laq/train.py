"""The LAQ training loop: set-up, data, model, loop, checkpoint. Entry point: laq/scripts/2_train_laq.py (Hydra).

`run(cfg, run_dir)` takes the composed Hydra config (typed by laq/config_schema.py); tests call it in-process with
`laq.config_schema.compose_config` and through the script.
"""
from __future__ import annotations

import itertools
import logging
import os
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch.nn.parallel import DistributedDataParallel as DDP

from common import amp, checkpoint, dist
from common.data import BadSampleCounter, empty_on_any_rank
from common.guard import NonFiniteGuard
from common.log import Writer, progress, setup_logger, write_metrics
from common.metrics import psnr
from common.optim import build_optimizer
from common.preempt import PreemptionHandler
from common.profiler import make_profiler
from common.sched import build_scheduler
from common.seed import seed_everything, set_deterministic
from laq.checkpoints import (EXACT_KEYS, RESUME_IGNORES, STEP_PATTERN, earlier_runs, epoch_name, find_resume,
                             load_initial_weights, step_name)
from laq.config_schema import validate
from laq.data.build import build_datasets, make_loader
from laq.evaluation import batch_code_stats, evaluate
from laq.models import build_model
from laq.models.nsvq import should_replace
from laq.train_helpers import SectionTimer, WandbMirror, pair_grid


def run(cfg, run_dir: str | os.PathLike) -> dict:
    """Train per `cfg`; writes checkpoints/, tb/, log.txt and metrics.json under the run folder (rank 0's path
    is used on every rank). Returns the final validation metrics."""
    # ---------------- set-up ----------------
    validate(cfg)  # value ranges the types cannot express (checkpoint_every_steps > 0, ...), before any work
    info = dist.setup(device=None if cfg.trainer.device == "auto" else str(cfg.trainer.device))
    run_dir = Path(dist.broadcast_object(str(Path(run_dir).resolve())))  # all ranks agree on rank 0's folder
    ckpt_dir = run_dir / "checkpoints"
    if cfg.training.deterministic:
        set_deterministic(True)
    seed_everything(cfg.seed, info.rank)
    logger = setup_logger(run_dir, packages=("laq",))
    for package in ("common", "laq"):  # their records reach our handlers once, not again through Hydra's root logger
        logging.getLogger(package).propagate = False
    writer = Writer(run_dir / "tb")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    wandb = WandbMirror(cfg.logging.use_wandb and info.is_main, cfg.logging.wandb_project, cfg.logging.wandb_mode,
                        run_dir, resolved)
    precision = amp.parse_precision("bf16" if cfg.training.precision == "auto" and info.device.type == "cuda"
                                    else "fp32" if cfg.training.precision == "auto" else cfg.training.precision)
    autocast = lambda: amp.autocast(info.device, precision)  # noqa: E731  (a fresh context per use)
    logger.info("Run folder %s | %d process(es) on %s | %s", run_dir, info.world_size, info.device, precision)

    # ---------------- data ----------------
    data = build_datasets(cfg.data, logger, world_size=info.world_size)
    batch_size = cfg.data.batch_size
    train_loader, train_sampler = make_loader(data.train, cfg.data, batch_size, cfg.seed, info.rank,
                                              info.world_size, train=True, iterable=data.iterable)
    val_loader = None
    if data.val is not None:
        val_loader, _ = make_loader(data.val, cfg.data, batch_size, cfg.seed, info.rank, info.world_size,
                                    train=False, iterable=data.iterable)
    steps_per_epoch = data.train_size // (batch_size * info.world_size)
    if steps_per_epoch == 0:
        raise ValueError(f"{data.train_size} training samples cannot fill one batch of {batch_size} x "
                         f"{info.world_size} process(es); lower data.batch_size or add data.")
    total_steps = steps_per_epoch * cfg.training.epochs
    if cfg.training.max_steps:
        total_steps = min(total_steps, cfg.training.max_steps)
    bad_samples = BadSampleCounter()

    # ---------------- model, optimizer, resume ----------------
    model = build_model(cfg.model).to(info.device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = cfg.training.optimizer
    optimizer = build_optimizer(trainable, opt.name, opt.lr, opt.weight_decay, opt.betas,
                                option="training.optimizer.name")
    scheduler = build_scheduler(optimizer, cfg.training.lr_schedule, cfg.training.warmup_steps, total_steps)
    guard = NonFiniteGuard(max_consecutive=cfg.training.max_nonfinite, logger=logger)
    scaler = amp.grad_scaler(info.device, precision)
    codebook_size, schedule = cfg.model.codebook_size, [list(s) for s in cfg.model.nsvq.replace_schedule]
    step, epoch, batches_done = 0, 0, 0
    path, state = find_resume(cfg.trainer.resume_from_checkpoint, ckpt_dir, [run_dir, *earlier_runs(run_dir)])
    checkpoint.check_fresh_run_folder(run_dir, resuming=state is not None)  # a new run never mixes with an old one
    if info.is_main:
        checkpoint.remove_stale_temp_files(ckpt_dir)  # what a killed save left behind
    if state is not None:
        checkpoint.check_resume_config(state.get("config"), resolved, EXACT_KEYS,
                                       allow_change=cfg.trainer.allow_config_change, ignore=RESUME_IGNORES,
                                       flag="trainer.allow_config_change=true", logger=logger)
        model.load_state_dict(state["model"])  # includes the codebook and its hit counters (buffers)
        optimizer.load_state_dict(state["optimizer"])
        if "scheduler" in state:  # checkpoints written before schedules existed ran at a constant lr
            scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        guard.load_state_dict(state["guard"])
        step, epoch, batches_done = state["step"], state["epoch"], state["batches_done"]
        checkpoint.restore_rng_states(state["rng"])
        logger.info("Resumed from %s at step %d (epoch %d, batch %d)", path, step, epoch, batches_done)
    elif cfg.model.init_from:  # new weights, new optimizer, step 0
        loaded = load_initial_weights(model, cfg.model.init_from)
        logger.info("Initialised the model with the %s of %s (new optimizer, step 0)", loaded, cfg.model.init_from)
        if loaded == "LAPA weights" and not cfg.model.lapa_compat:
            logger.warning("model.init_from holds LAPA weights but model.lapa_compat=false: the corrected temporal "
                           "PEG and action tokens differ from what they were trained with (set "
                           "model.lapa_compat=true to keep LAPA's behaviour).")
    # No buffer sync on forward: the NSVQ hit counters are summed over ranks by the quantiser itself.
    ddp_model = DDP(model, forward_sync_buffers=False) if info.distributed else model
    # Compiled for the training steps only (evaluation runs eagerly, so eval mode does not trigger a recompile).
    train_model = torch.compile(ddp_model) if cfg.training.compile else ddp_model
    logger.info("Model %s: %.2fM parameters; %d steps (%d per epoch)", cfg.model.name,
                sum(p.numel() for p in model.parameters()) / 1e6, total_steps, steps_per_epoch)

    def save(name: str) -> None:
        rng_all = checkpoint.gather_rng_states()  # a collective: every rank calls it
        if info.is_main:
            written = checkpoint.save(ckpt_dir / name, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                "guard": guard.state_dict(), "step": step, "epoch": epoch, "batches_done": batches_done,
                "rng": rng_all, "config": resolved})
            if name.startswith("step_"):  # only this run's step files; never the one just written or resumed
                checkpoint.prune(ckpt_dir, cfg.training.keep_last, STEP_PATTERN,
                                 keep=[written] + ([path] if path is not None else []))
        dist.barrier()

    def validate_now() -> dict:
        if val_loader is None:
            return {}
        metrics, sample = evaluate(ddp_model, val_loader, info.device, autocast, codebook_size,
                                   cfg.training.val_max_batches, seed=cfg.seed)
        writer.scalars(metrics, step)
        wandb.log(metrics, step)
        if sample is not None:
            writer.image("val/first_future_predicted", pair_grid(**sample), step)
        logger.info("step %d validation: %s", step, " ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())))
        return metrics

    # ---------------- loop ----------------
    timer = SectionTimer()
    profiler_type = cfg.training.profiler.type
    torch_profiler = make_profiler(cfg.training.profiler.enabled and profiler_type == "pytorch",
                                   run_dir / "profiler")
    metrics: dict = {}
    window = {"samples": 0, "wait": 0.0, "start": time.perf_counter()}
    stop = step >= total_steps
    bar = progress(total=total_steps, initial=step, desc=f"laq {cfg.experiment_name}")  # rank 0, with ETA
    with PreemptionHandler() as preemption, torch_profiler:
        while not stop:
            if not data.iterable:
                data.train.set_epoch(epoch)  # scene level: a new pair per scene each epoch
            if train_sampler is not None:
                train_sampler.set_epoch(epoch)
                train_sampler.start_at(batches_done * batch_size)  # mid-epoch resume: skip what was seen
            batches = iter(train_loader)
            if data.iterable:  # a fixed number of batches so every rank steps the same number of times
                batches = itertools.islice(batches, steps_per_epoch - batches_done)
            while True:
                wait_start = time.perf_counter()
                with timer.section("data"):
                    batch = next(batches, StopIteration)
                window["wait"] += time.perf_counter() - wait_start
                if batch is StopIteration:
                    break
                batches_done += 1
                skipped = bad_samples.update(batch)
                if empty_on_any_rank(batch):
                    continue  # every sample was bad here or on another rank (counted above): all ranks skip
                first, future = batch["first"].to(info.device), batch["future"].to(info.device)
                with timer.section("forward_backward"):
                    with autocast():
                        out = train_model(first, future)
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(out["loss"]).backward()
                with timer.section("optimizer"):
                    scaler.unscale_(optimizer)
                    grad_norm = torch.nn.utils.clip_grad_norm_(
                        trainable, float(cfg.training.grad_clip) if cfg.training.grad_clip else float("inf"))
                    if guard.check(out["loss"], grad_norm, step):
                        scaler.step(optimizer)
                    scaler.update()
                    scheduler.step()
                step += 1
                bar.update(1)
                window["samples"] += first.shape[0] * info.world_size
                replaced = model.vq.replace_dead_codes() if should_replace(step, schedule) else None
                torch_profiler.step()

                if step % cfg.logging.log_every == 0 or replaced is not None or step == 1:
                    elapsed = time.perf_counter() - window["start"]
                    scalars = {"loss": dist.all_reduce_mean(out["loss"]).item(),
                               "recon_loss": dist.all_reduce_mean(out["recon_loss"]).item(),
                               "codebook_error": dist.all_reduce_mean(out["codebook_error"]).item(),
                               "psnr": psnr(out["recon"].detach().float(), future, 1.0).mean().item(),
                               "copy_psnr": psnr(first, future, 1.0).mean().item(),
                               "grad_norm": float(grad_norm), "lr": optimizer.param_groups[0]["lr"],
                               "samples_per_s": window["samples"] / max(elapsed, 1e-9),
                               "data_wait_fraction": window["wait"] / max(elapsed, 1e-9),
                               "skipped_samples": float(skipped), "epoch": float(epoch)}
                    scalars.update(batch_code_stats(out["indices"].detach(), codebook_size))
                    if replaced is not None:
                        scalars["codes_replaced"] = float(replaced)
                    writer.scalars(scalars, step, prefix="train/")
                    wandb.log({f"train/{k}": v for k, v in scalars.items()}, step)
                    bar.set_postfix(loss=f"{scalars['loss']:.4g}", psnr=f"{scalars['psnr']:.2f}", refresh=False)
                    logger.info("step %d/%d epoch %d loss %.5f psnr %.2f (copy %.2f) codes %d ppl %.2f "
                                "%.1f samples/s wait %.0f%%%s", step, total_steps, epoch, scalars["loss"],
                                scalars["psnr"], scalars["copy_psnr"], scalars["unique_codes"],
                                scalars["perplexity"], scalars["samples_per_s"],
                                100 * scalars["data_wait_fraction"],
                                f" replaced {replaced} codes" if replaced is not None else "")
                    window = {"samples": 0, "wait": 0.0, "start": time.perf_counter()}
                if step % cfg.logging.image_every == 0:
                    writer.image("train/first_future_predicted",
                                 pair_grid(first[:4].cpu(), future[:4].cpu(), out["recon"][:4].detach().float().cpu()),
                                 step)
                if step % cfg.training.val_every_steps == 0 and step < total_steps:
                    metrics = validate_now()
                stop = preemption.stop_requested() or step >= total_steps
                if step % cfg.training.checkpoint_every_steps == 0 and not stop and batches_done < steps_per_epoch:
                    save(step_name(step))
                if stop:
                    break
            if not stop or batches_done >= steps_per_epoch:  # the epoch is complete (also on its last step)
                bad_samples.end_epoch(logger, epoch)
                epoch, batches_done = epoch + 1, 0
                every = cfg.training.checkpoint_every_epochs
                if every and epoch % every == 0:
                    save(epoch_name(epoch))
                elif step % cfg.training.checkpoint_every_steps == 0 and not stop:
                    save(step_name(step))  # a step checkpoint due on the epoch's last step, saved as "next epoch"
    bar.close()
    if preemption.received is not None:
        save("last.pt")
        logger.info("Preempted: saved %s at step %d; resume with trainer.resume_from_checkpoint=latest",
                    ckpt_dir / "last.pt", step)
    else:
        bad_samples.end_epoch(logger, epoch)
        metrics = validate_now()
        save("last.pt")
        metrics.update({"train/steps": float(step), "train/skipped_samples_total": float(bad_samples.total)})
        write_metrics(run_dir, metrics)
    if cfg.training.profiler.enabled and profiler_type == "simple" and info.is_main:
        report = timer.report()
        (run_dir / "profile_simple.txt").write_text(report + "\n")
        logger.info("Simple profiler (wall time per section):\n%s", report)
    writer.close()
    wandb.finish()
    dist.cleanup()
    return metrics
