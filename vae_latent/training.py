"""The VAE training run shared by train_ddp.py and train_single_gpu.py: set-up, data, model, loop, checkpoint.

One code path: under torchrun every process runs `run()` in a process group (DistributedSampler shards, DDP
averages gradients, BatchNorm statistics are synchronised); without torchrun it is the same code in one process.
"""
from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from common import checkpoint, dist, run_checks
from common import config as common_config
from common.amp import autocast, grad_scaler, parse_precision
from common.data import BadSampleCounter, collate_skipping
from common.guard import NonFiniteGuard
from common.log import Writer, progress, setup_logger, write_metrics
from common.preempt import PreemptionHandler
from common.profiler import make_profiler
from common.sampler import ResumableSampler
from common.seed import loader_generator, seed_everything, set_deterministic, worker_init_fn
from common.viz import image_grid, to_uint8
from vae_latent.baselines import fit_baselines
from vae_latent.dataset_sthv2 import build_datasets
from vae_latent.evaluation import ACTIVE_UNIT_THRESHOLD, evaluate
from vae_latent.run_folder import STEP_PATTERN, check_fresh_run_folder, resolve_run_dir
from vae_latent.sync_bn import convert_sync_batchnorm
from vae_latent.vae_config import load_config
from vae_latent.vanilla_vae_model import build_model, to_unit_range, vae_loss

N_IMAGES = 8  # reconstructions and prior samples per logged grid
# Keys whose change between a run and its resumption breaks the exact continuation (refused unless
# --allow_config_change); other changed keys (logging periods, workers, run length) are only warned about.
EXACT_RESUME_KEYS = ("model_params", "exp_params", "data_params.data_path", "data_params.labels_dir",
                     "data_params.image_size", "data_params.train_batch_size", "data_params.frames_per_video",
                     "data_params.val_fraction", "data_params.max_val_videos", "trainer_params.gradient_clip_val",
                     "trainer_params.gradient_clip_algorithm", "trainer_params.deterministic")
RESUME_MAY_CHANGE = ("trainer_params.max_epochs", "trainer_params.max_steps")  # extending a run is the point


def parse_args(argv: list[str] | None, description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", default=None, help="YAML config (default: the spec config_vae_sthv2.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.SUB=VALUE",
                        help="override one config key, e.g. --set exp_params.LR=3e-4 (repeatable)")
    parser.add_argument("--resume", default=None,
                        help="auto (or latest): newest valid checkpoint of this run folder; or a checkpoint path")
    parser.add_argument("--allow_config_change", action="store_true",
                        help="resume even though the config differs from the checkpoint's in a key that breaks an "
                             "exact continuation (model, data, optimisation); the changes are logged")
    parser.add_argument("--dump_rank_state", default=None, help=argparse.SUPPRESS)  # test hook: per-rank weights
    return parser.parse_args(argv)


def choose_device(gpus: int) -> str | None:
    """trainer_params.gpus -> the device request for common.dist.setup (None = CUDA when available)."""
    if gpus == 0:
        return "cpu"
    if gpus > 0 and not torch.cuda.is_available():
        raise RuntimeError(f"trainer_params.gpus={gpus} but no CUDA device is visible; use gpus=0 (CPU) or -1 (auto)")
    return "cuda" if gpus > 0 else None


def main(argv: list[str] | None = None, allow_distributed: bool = True,
         description: str = "Train the VanillaVAE") -> dict:
    args = parse_args(argv, description)
    config = load_config(args.config, args.overrides)
    if not allow_distributed and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise RuntimeError("train_single_gpu.py runs one process; launch train_ddp.py with torchrun for several.")
    return run(config, resume=args.resume, allow_config_change=args.allow_config_change,
               dump_rank_state=args.dump_rank_state)


def clip_gradients(params: list[torch.nn.Parameter], clip_val: float | None, algorithm: str,
                   max_norm: float | None) -> torch.Tensor:
    """Lightning's gradient_clip_val with gradient_clip_algorithm "norm" clips the total norm (as max_grad_norm
    does: the smaller limit wins); with "value" it clips each element to [-clip_val, clip_val] first. Either
    limit may be None (off). Returns the total norm before the norm clipping (for logging)."""
    if clip_val and algorithm == "value":
        torch.nn.utils.clip_grad_value_(params, clip_val)
    limits = [limit for limit in (max_norm, clip_val if algorithm == "norm" else None) if limit]
    return torch.nn.utils.clip_grad_norm_(params, min(limits, default=math.inf))


def make_loader(dataset, sampler, batch_size: int, num_workers: int, seed: int, device: torch.device,
                drop_last: bool, pin_memory: bool = True) -> DataLoader:
    # The loader's own generator keeps its seed draws off the global torch RNG, which the reparameterisation
    # noise uses: a resumed run then draws the same noise as an uninterrupted one.
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      collate_fn=collate_skipping, worker_init_fn=worker_init_fn, drop_last=drop_last,
                      generator=loader_generator(seed), pin_memory=pin_memory and device.type == "cuda",
                      persistent_workers=False)  # workers must see the dataset's new epoch each epoch


def run(config: dict, resume: str | None = None, allow_config_change: bool = False,
        dump_rank_state: str | None = None) -> dict:
    """Train as `config` says; returns the last validation metrics (flat keys, as in metrics.json)."""
    model_cfg, data_cfg, exp_cfg = config["model_params"], config["data_params"], config["exp_params"]
    trainer_cfg, log_cfg = config["trainer_params"], config["logging_params"]

    # ---- set-up: processes, seeds, run folder, loggers
    info = dist.setup(choose_device(trainer_cfg["gpus"]))
    device = info.device
    if trainer_cfg["deterministic"]:
        set_deterministic(True)
    seed = exp_cfg["manual_seed"]
    seed_everything(seed, info.rank)
    rdir = resolve_run_dir(config, resume)
    ckpt_dir = rdir / "checkpoints"
    # Resolve the checkpoint before anything is written, so a refused fresh start leaves the folder untouched.
    path, state = checkpoint.resolve_resume(resume, ckpt_dir, STEP_PATTERN, map_location="cpu")
    if state is None:
        if resume is not None and checkpoint.numbered(ckpt_dir, STEP_PATTERN):
            raise checkpoint.CheckpointError(f"--resume {resume}: no checkpoint in {ckpt_dir} could be read "
                                             "(see the warnings above)")
        check_fresh_run_folder(ckpt_dir)
    else:
        run_checks.check_resume_config(state.get("config"), config, EXACT_RESUME_KEYS, allow_config_change,
                                       ignore=RESUME_MAY_CHANGE)
    if info.is_main:
        checkpoint.remove_stale_temp_files(ckpt_dir)  # left by a save that a kill interrupted
    logger = setup_logger(rdir if info.is_main else None, name="vae_latent", packages=("vae_latent",))
    writer = Writer(rdir)  # TensorBoard events directly in logs_vae/<name>/
    if info.is_main:
        common_config.save(config, rdir / "config.yaml")
    amp_dtype = parse_precision(exp_cfg["precision"])
    logger.info("Run folder %s | %d process(es) on %s | precision %s", rdir, info.world_size, device, amp_dtype)

    # ---- data
    train_set, val_set, split_summary = build_datasets(data_cfg, model_cfg["image_size"], seed)
    logger.info("Data %s: %s", data_cfg["data_path"], split_summary)
    batch_size = data_cfg["train_batch_size"]
    sampler = ResumableSampler(train_set, info.world_size, info.rank, shuffle=True, seed=seed, drop_last=True)
    if len(sampler) < batch_size:
        raise ValueError(f"Each of the {info.world_size} process(es) gets {len(sampler)} training samples per epoch, "
                         f"fewer than train_batch_size={batch_size}: no full batch. Lower the batch size.")
    loader = make_loader(train_set, sampler, batch_size, data_cfg["num_workers"], seed + info.rank, device, True,
                         data_cfg["pin_memory"])
    val_sampler = ResumableSampler(val_set, info.world_size, info.rank, shuffle=False)
    val_loader = make_loader(val_set, val_sampler, data_cfg["val_batch_size"], data_cfg["num_workers"], seed,
                             device, False, data_cfg["pin_memory"])
    baselines = {}
    if data_cfg["baseline_fit_frames"]:  # the cheap reconstructions the VAE must beat, scored beside it
        baselines = fit_baselines([v.frames for v in train_set.videos], model_cfg["image_size"],
                                  model_cfg["latent_dim"], data_cfg["baseline_fit_frames"], seed)
        logger.info("Baselines fitted on %d training frames: mean image, PCA with %d components",
                    min(data_cfg["baseline_fit_frames"], train_set.offsets[-1]), baselines["pca"].k)

    # ---- model, optimiser, schedule
    model = build_model(model_cfg).to(device)
    if info.distributed:
        model = convert_sync_batchnorm(model, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=exp_cfg["LR"], weight_decay=exp_cfg["weight_decay"])
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=exp_cfg["scheduler_gamma"])  # per epoch
    scaler = grad_scaler(device, amp_dtype)
    guard = NonFiniteGuard(logger=logger)
    bad_samples = BadSampleCounter()
    step, epoch, batches_done, best_val_loss = 0, 0, 0, math.inf
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        guard.load_state_dict(state["guard"])
        step, epoch, batches_done = state["step"], state["epoch"], state["batches_done"]
        best_val_loss = state["best_val_loss"]
        checkpoint.restore_rng_states(state["rng"])
        logger.info("Resumed from %s at step %d (epoch %d, batch %d)", path, step, epoch, batches_done)
    # Synchronised BN keeps running statistics identical on every rank, so DDP need not re-broadcast buffers.
    train_model = DDP(model, forward_sync_buffers=False) if info.distributed else model
    prior_z_generator = torch.Generator().manual_seed(seed)  # the same prior samples at every logging step

    def save(path: Path, full: bool = True, extra: dict | None = None) -> None:
        rng_all = checkpoint.gather_rng_states()  # a collective: every rank calls it
        if info.is_main:
            payload = {"model": model.state_dict(), "config": config, "step": step, "epoch": epoch, **(extra or {})}
            if full:
                payload.update(optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                               scaler=scaler.state_dict(), guard=guard.state_dict(), batches_done=batches_done,
                               best_val_loss=best_val_loss, rng=rng_all)
            checkpoint.save(path, payload)
            if full:
                checkpoint.prune(ckpt_dir, log_cfg["keep_last_checkpoints"], STEP_PATTERN, keep=(path,))
        dist.barrier()

    def validate() -> dict:
        nonlocal best_val_loss
        results = evaluate(model, val_loader, device, exp_cfg["kld_weight"], amp_dtype, baselines)
        kld_per_dim = results.pop("kld_per_dim")
        writer.scalars(results, step)
        writer.histogram("val/kld_per_dim", kld_per_dim, step)
        logger.info("epoch %d step %d | " + " ".join(f"{k}={v:.4g}" for k, v in results.items()), epoch, step)
        results.update({"step": step, "epoch": epoch})
        write_metrics(rdir, results)
        if results["val/loss"] < best_val_loss:
            best_val_loss = results["val/loss"]
            save(ckpt_dir / "vae_best.pt", full=False, extra={"metrics": results})
        return results

    def log_images(images: torch.Tensor, recons: torch.Tensor) -> None:
        if not info.is_main:
            return
        pairs = [[to_uint8(to_unit_range(img)) for img in images[:N_IMAGES]],
                 [to_uint8(to_unit_range(img)) for img in recons[:N_IMAGES].detach()]]
        writer.image("train/reconstructions", image_grid(pairs), step)  # top: input, bottom: reconstruction
        model.eval()  # BN running statistics, and no update of them
        samples = model.sample(N_IMAGES, device, generator=prior_z_generator.manual_seed(seed))
        model.train()
        writer.image("train/prior_samples", image_grid([[to_uint8(to_unit_range(s)) for s in samples]]), step)

    # ---- loop
    max_steps = trainer_cfg["max_steps"] or math.inf
    clip_val, clip_algorithm = trainer_cfg["gradient_clip_val"], trainer_cfg["gradient_clip_algorithm"]
    max_norm = exp_cfg["max_grad_norm"]
    params = [p for p in model.parameters() if p.requires_grad]
    val_results: dict = {}
    data_time = step_time = 0.0
    stop = False
    planned_steps = min(max_steps, trainer_cfg["max_epochs"] * len(loader))
    logger.info("Training %.2fM parameters from step %d of %d", sum(p.numel() for p in params) / 1e6, step,
                planned_steps)
    bar = progress(total=planned_steps, initial=step, desc="train")  # rank 0, on a terminal (or PROGRESS=1)
    with PreemptionHandler() as preemption, make_profiler(trainer_cfg["profile"], rdir / "profile") as profiler:
        while epoch < trainer_cfg["max_epochs"] and step < max_steps and not stop:
            train_set.set_epoch(epoch)
            sampler.set_epoch(epoch)
            sampler.start_at(batches_done * batch_size)  # mid-epoch resume: skip the batches already seen
            train_model.train()
            tick = time.perf_counter()
            for batch in loader:
                fetched = time.perf_counter()
                bad_samples.update(batch)
                batches_done += 1
                # Every rank must skip together, or DDP's gradient all-reduce would wait forever.
                if dist.any_rank(batch is None or "image" not in batch):
                    tick = time.perf_counter()
                    continue
                images = batch["image"].to(device, non_blocking=True)
                with autocast(device, amp_dtype):
                    out = train_model(images)
                losses = vae_loss(out["recons"], images, out["mu"], out["log_var"], exp_cfg["kld_weight"])
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(losses["loss"]).backward()
                scaler.unscale_(optimizer)
                grad_norm = clip_gradients(params, clip_val, clip_algorithm, max_norm)
                if guard.check(losses["loss"], grad_norm, step):
                    scaler.step(optimizer)
                scaler.update()
                step += 1
                bar.update(1)
                profiler.step()
                done = time.perf_counter()
                data_time, step_time = data_time + fetched - tick, step_time + done - tick

                if step % trainer_cfg["log_every_n_steps"] == 0:
                    reduced = dist.all_reduce_mean(torch.stack([losses["loss"], losses["recon"], losses["kld"]]))
                    kld_per_dim = dist.all_reduce_mean(losses["kld_per_dim"].detach())
                    mu_var = dist.all_reduce_mean(out["mu"].detach().float().var(dim=0))  # per-rank batch variance
                    writer.scalars({"train/loss": reduced[0], "train/recon_loss": reduced[1], "train/kld": reduced[2],
                                    "train/lr": scheduler.get_last_lr()[0], "train/grad_norm": grad_norm,
                                    "train/active_units": (mu_var > ACTIVE_UNIT_THRESHOLD).sum(),
                                    "train/data_wait_fraction": data_time / max(step_time, 1e-9),
                                    "train/samples_per_s": batch_size * info.world_size * trainer_cfg[
                                        "log_every_n_steps"] / max(step_time, 1e-9)}, step)
                    writer.histogram("train/kld_per_dim", kld_per_dim, step)
                    logger.info("epoch %d step %d | loss %.4f recon %.4f kld %.2f | lr %.3g | grad %.3g | "
                                "data wait %.0f%%", epoch, step, reduced[0], reduced[1], reduced[2],
                                scheduler.get_last_lr()[0], grad_norm, 100 * data_time / max(step_time, 1e-9))
                    bar.set_postfix(loss=f"{reduced[0].item():.4f}", epoch=epoch, refresh=False)
                    data_time = step_time = 0.0
                if step % log_cfg["log_images_every_n_steps"] == 0:
                    log_images(images, out["recons"])
                stop = preemption.stop_requested()
                if step % log_cfg["save_every_n_steps"] == 0 or stop:
                    save(ckpt_dir / f"step_{step:08d}.pt")
                if stop or step >= max_steps:
                    break
                tick = time.perf_counter()
            else:  # the epoch ran to its end
                bad_samples.end_epoch(logger, epoch)
                epoch, batches_done = epoch + 1, 0
                scheduler.step()  # ExponentialLR decays once per epoch, not per step
                if epoch % trainer_cfg["check_val_every_n_epoch"] == 0:
                    val_results = validate()
    bar.close()

    if stop:
        logger.info("Stop requested: saved step %d; continue with --resume auto.", step)
    else:
        if not val_results or val_results["step"] != step:
            val_results = validate()
        save(ckpt_dir / f"step_{step:08d}.pt")
        save(ckpt_dir / "vae_final.pt", full=False, extra={"metrics": val_results})
        logger.info("Finished at step %d: %s", step, ckpt_dir / "vae_final.pt")
    if dump_rank_state:
        Path(dump_rank_state).mkdir(parents=True, exist_ok=True)
        torch.save({k: v.cpu() for k, v in model.state_dict().items()},
                   Path(dump_rank_state) / f"rank{info.rank}.pt")
    writer.close()
    dist.cleanup()
    return val_results


if __name__ == "__main__":
    main()
