"""Train the stereo model (FoundationStereo-style) with the guide's command line.

    python stereo/scripts/train.py --config stereo/configs/train/stereo_v1.json --workspace workspace/v1
    torchrun --nproc_per_node=8 stereo/scripts/train.py --config ... --workspace ... --checkpoint latest

Writes into WORKSPACE: config.json (resolved), log.txt, tensorboard/, checkpoint/ (see stereo.train.utils),
vis/{step:08d}.png, metrics.json (validation metrics, with the mean-disparity baseline), mlflow.db (MLflow).
"""
from __future__ import annotations

import argparse
import contextlib
import os

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from common import amp, checkpoint, dist
from common.config import save as save_config
from common.data import BadSampleCounter, collate_skipping, empty_on_any_rank
from common.ema import make_ema
from common.guard import NonFiniteGuard
from common.log import Writer, setup_logger, write_metrics
from common.preempt import PreemptionHandler
from common.profiler import make_profiler
from common.sampler import ResumableSampler
from common.seed import seed_everything, set_deterministic
from common.viz import save_png
from stereo.core.model import build_model
from stereo.scripts.evaluate import mean_disparity, validate
from stereo.train.config import load_config
from stereo.train.dataloader import EvalDataset, SizedBatchSampler, TrainingDataset
from stereo.train.losses import build_loss
from stereo.train.utils import (build_lr_scheduler, build_optimizer, resolve_checkpoint, save_training_checkpoint,
                                str2bool, visualise)

DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "train", "stereo_v1.json")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="json config (unknown keys are errors)")
    parser.add_argument("--workspace", default="workspace/debug", help="run folder")
    parser.add_argument("--checkpoint", default=None, help="a .pt path, 'latest', or a step number")
    parser.add_argument("--batch_size_forward", type=int, default=8, help="pairs per forward pass per process")
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1)
    parser.add_argument("--enable_gradient_checkpointing", type=str2bool, default=True)
    parser.add_argument("--enable_mixed_precision", type=str2bool, default=False)
    parser.add_argument("--enable_ema", type=str2bool, default=True)
    parser.add_argument("--num_iterations", type=int, default=1000000, help="optimizer steps in total")
    parser.add_argument("--save_every", type=int, default=10000)
    parser.add_argument("--log_every", type=int, default=1000)
    parser.add_argument("--vis_every", type=int, default=0, help="0 = never")
    parser.add_argument("--num_vis_images", type=int, default=32)
    parser.add_argument("--enable_mlflow", type=str2bool, default=False, help="needs the mlflow package")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--enable_profiler", type=str2bool, default=False, help="torch.profiler trace to tensorboard/")
    parser.add_argument("--deterministic", type=str2bool, default=False, help="bitwise-reproducible kernels (slower)")
    return parser


def start_mlflow(enabled: bool, workspace: str, params: dict):
    if not enabled:
        return None
    try:
        import mlflow
    except ImportError as exc:
        raise RuntimeError("--enable_mlflow true needs the mlflow package (pip install mlflow), or pass "
                           "--enable_mlflow false; TensorBoard logging is always on.") from exc
    # mlflow >= 3.7 refuses the plain file store; a SQLite file in the workspace is its local default.
    mlflow.set_tracking_uri("sqlite:///" + os.path.abspath(os.path.join(workspace, "mlflow.db")))
    mlflow.start_run()
    mlflow.log_params(params)
    return mlflow


def main(argv=None) -> dict:
    args = get_args_parser().parse_args(argv)
    config = load_config(args.config)
    # ---------------------------------------------------------------- set-up
    info = dist.setup()
    if args.deterministic:
        set_deterministic(True)
    seed_everything(args.seed, info.rank)
    logger = setup_logger(args.workspace, packages=("stereo",))
    writer = Writer(os.path.join(args.workspace, "tensorboard"))
    ckpt_dir = os.path.join(args.workspace, "checkpoint")
    if info.is_main:
        save_config(config, os.path.join(args.workspace, "config.json"))
    mlflow = start_mlflow(args.enable_mlflow and info.is_main, args.workspace, {**vars(args), "world_size": info.world_size})
    precision = amp.parse_precision(config["train"]["mixed_precision_dtype"] if args.enable_mixed_precision else "fp32")

    # ---------------------------------------------------------------- data
    data_cfg = config["data"]
    if not data_cfg["datasets"]:
        raise ValueError(f"{args.config}: data.datasets is empty; add at least one dataset (see stereo/README.md)")
    dataset = TrainingDataset(data_cfg["datasets"], data_cfg["image_sizes"], data_cfg["stereo_augmentation"],
                              data_cfg["max_disparity"], args.seed, data_cfg["strict"])
    sampler = ResumableSampler(dataset, info.world_size, info.rank, shuffle=True, seed=args.seed, drop_last=True)
    batch_sampler = SizedBatchSampler(sampler, args.batch_size_forward, len(data_cfg["image_sizes"]), args.seed)
    loader = DataLoader(dataset, batch_sampler=batch_sampler, num_workers=data_cfg["num_workers"],
                        collate_fn=collate_skipping, pin_memory=info.device.type == "cuda")
    if len(batch_sampler) == 0:
        raise ValueError(f"{len(dataset)} training pairs give no full batch of {args.batch_size_forward} per process")
    val_sets = [(entry["name"] or f"val{i}", EvalDataset(entry["path"], entry["format"], data_cfg["max_disparity"],
                                                         data_cfg["strict"]))
                for i, entry in enumerate(data_cfg["val_datasets"])]
    bad_samples = BadSampleCounter()

    # ---------------------------------------------------------------- model, optimizer, EMA
    model = build_model(config["model"]).to(info.device)
    model.gradient_checkpointing = args.enable_gradient_checkpointing
    optimizer = build_optimizer(model, config["optimizer"])
    scheduler = build_lr_scheduler(optimizer, config["lr_scheduler"], args.num_iterations)
    scaler = amp.grad_scaler(info.device, precision)
    ema = make_ema(model, config["train"]["ema_decay"]) if args.enable_ema else None
    guard = NonFiniteGuard(config["train"]["max_nonfinite"], logger)
    compute_loss = build_loss(config["loss"])
    step, epoch, batches_done = 0, 0, 0

    resumed = resolve_checkpoint(args.checkpoint, ckpt_dir)
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        if ema is not None:
            ema.module.load_state_dict(resumed["ema"] if resumed["ema"] is not None else resumed["model"])
        state = resumed["optimizer"]
        if state is not None:  # a full training state: continue exactly where it stopped
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["lr_scheduler"])
            scaler.load_state_dict(state["scaler"])
            guard.load_state_dict(state["guard"])
            step, epoch, batches_done = state["step"], state["epoch"], state["batches_done"]
            checkpoint.set_rng_state(state["rng"][info.rank % len(state["rng"])])
        logger.info("Loaded %s; starting at step %d", resumed["path"], step)
    ddp_model = DDP(model, device_ids=[info.device] if info.device.type == "cuda" else None) if info.distributed else model
    logger.info("Model: %.2fM parameters (%s features, %s correlation); %d training pairs; world size %d",
                sum(p.numel() for p in model.parameters()) / 1e6, config["model"]["feature_type"],
                config["model"]["correlation_implementation"], len(dataset), info.world_size)

    def save() -> None:
        rng_all = [checkpoint.rng_state()]
        if info.distributed:
            rng_all = [None] * info.world_size
            torch.distributed.all_gather_object(rng_all, checkpoint.rng_state())
        if info.is_main:
            training_state = {"optimizer": optimizer.state_dict(), "lr_scheduler": scheduler.state_dict(),
                              "scaler": scaler.state_dict(), "guard": guard.state_dict(), "epoch": epoch,
                              "batches_done": batches_done, "rng": rng_all, "config": config}
            save_training_checkpoint(ckpt_dir, step, config["model"], model.state_dict(), training_state,
                                     ema.module.state_dict() if ema is not None else None, config["train"]["keep_last"])
        dist.barrier()

    def run_validation() -> dict:
        results = {}
        eval_model = ema.module if ema is not None else model
        for name, val_set in val_sets:
            metrics = validate(eval_model, val_set, info.device, precision)
            results.update({f"val/{name}/{key}" if len(val_sets) > 1 else f"val/{key}": value
                            for key, value in metrics.items()})
        writer.scalars(results, step)
        return results

    def train_mode() -> None:
        model.train()
        if config["train"]["freeze_bn"]:  # BatchNorm uses (and keeps) its running statistics, as RAFT-Stereo
            model.apply(lambda m: m.eval() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) else None)

    # ---------------------------------------------------------------- loop
    train_mode()
    accumulation = args.gradient_accumulation_steps
    loss_sum, terms_sum, logged = 0.0, {}, 0
    stop = step >= args.num_iterations
    with PreemptionHandler() as preemption, make_profiler(args.enable_profiler,
                                                          os.path.join(args.workspace, "tensorboard")) as profiler:
        micro = 0
        while not stop:
            dataset.epoch = epoch
            sampler.set_epoch(epoch)
            sampler.start_at(batches_done * args.batch_size_forward)  # mid-epoch resume: skip what was seen
            for batch in loader:
                batches_done += 1
                bad_samples.update(batch)
                if empty_on_any_rank(batch):  # all samples unreadable: every rank drops this step together
                    continue
                batch = {k: v.to(info.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
                last_micro = (micro + 1) % accumulation == 0
                # DDP all-reduces gradients in every backward; on accumulation steps that sync is wasted work
                # (only the summed gradient of the last micro-batch matters), so skip it with no_sync.
                sync = contextlib.nullcontext() if last_micro or not info.distributed else ddp_model.no_sync()
                with sync:
                    with amp.autocast(info.device, precision):
                        outputs = ddp_model(batch["left"], batch["right"])
                    loss, terms = compute_loss(outputs, batch)
                    scaler.scale(loss / accumulation).backward()
                micro += 1
                loss_sum += float(loss.detach()) / accumulation
                for key, value in terms.items():
                    terms_sum[key] = terms_sum.get(key, 0.0) + float(value) / accumulation
                if not last_micro:
                    continue
                scaler.unscale_(optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config["train"]["clip_grad"])
                if guard.check(loss, grad_norm, step):
                    scaler.step(optimizer)
                    if ema is not None:
                        ema.update_parameters(model)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                profiler.step()
                step, logged = step + 1, logged + 1

                if step % args.log_every == 0 or step == args.num_iterations:
                    scalars = {"train/loss": loss_sum / logged, "train/lr": scheduler.get_last_lr()[0],
                               "train/grad_norm": float(grad_norm),
                               **{f"train/{k}": v / logged for k, v in terms_sum.items()}}
                    scalars["train/loss"] = float(dist.all_reduce_mean(torch.tensor(scalars["train/loss"])))
                    writer.scalars(scalars, step)
                    if mlflow is not None:
                        mlflow.log_metrics({k.replace("/", "_"): v for k, v in scalars.items()}, step=step)
                    logger.info("step %d  loss %.4f  lr %.2e  grad %.3f", step, scalars["train/loss"],
                                scalars["train/lr"], scalars["train/grad_norm"])
                    loss_sum, terms_sum, logged = 0.0, {}, 0
                if args.vis_every and step % args.vis_every == 0 and info.is_main:
                    count = args.num_vis_images
                    grid = visualise(batch["left"][:count], batch["disparity"][:count], batch["valid"][:count],
                                     outputs["disparity"][:count].detach())
                    writer.image("vis/left_gt_pred_error", grid, step)
                    os.makedirs(os.path.join(args.workspace, "vis"), exist_ok=True)
                    save_png(os.path.join(args.workspace, "vis", f"{step:08d}.png"), grid)
                if val_sets and config["train"]["val_every"] and step % config["train"]["val_every"] == 0:
                    logger.info("validation at step %d: %s", step, run_validation())
                    train_mode()
                stop = preemption.stop_requested() or step >= args.num_iterations
                if step % args.save_every == 0 or stop:
                    save()
                if stop:
                    break
            else:
                bad_samples.end_epoch(logger, epoch)
                epoch, batches_done = epoch + 1, 0
    if preemption.received is not None:
        logger.info("Preempted: saved at step %d, exiting.", step)

    # ---------------------------------------------------------------- final validation and metrics.json
    metrics = {"step": step, "train/skipped_nonfinite_steps": guard.skipped_total}
    if val_sets and preemption.received is None:
        metrics.update(run_validation())
        baseline = mean_disparity(dataset)
        for name, val_set in val_sets:
            key = f"val/{name}/baseline_mean_epe" if len(val_sets) > 1 else "val/baseline_mean_epe"
            metrics[key] = validate(None, val_set, info.device, precision, constant=baseline)["epe"]
        metrics["train/mean_disparity"] = baseline
        logger.info("final metrics: %s", metrics)
    write_metrics(args.workspace, metrics)
    if mlflow is not None:
        mlflow.log_metrics({k.replace("/", "_"): v for k, v in metrics.items() if isinstance(v, (int, float))})
        mlflow.end_run()
    writer.close()
    dist.cleanup()
    return metrics


if __name__ == "__main__":
    main()
