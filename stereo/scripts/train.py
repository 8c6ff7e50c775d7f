"""Train the stereo model with the guide's command line (a MoGe-style trainer). From stereo/:

    python scripts/train.py --config configs/train/stereo_v1.json --workspace workspace/v1
    torchrun --nproc_per_node=8 scripts/train.py --config ... --workspace ...
    accelerate launch --multi_gpu --num_processes 8 scripts/train.py --config ... --workspace ...
    python scripts/train.py --workspace workspace/v1 --checkpoint latest    # continues with the run's settings

Writes into WORKSPACE: config.json (resolved), log.txt, tensorboard/, checkpoint/ (stereo.train.checkpoints),
vis/{step:08d}.png, metrics.json (validation metrics beside the constant-disparity baselines), mlflow.db.
"""
from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from common import amp, checkpoint, dist
from common.checkpoint import CheckpointError
from common.config import ConfigError
from common.config import save as save_config
from common.data import BadSampleCounter, BadSampleError, collate_skipping, empty_on_any_rank
from common.ema import make_ema
from common.guard import NonFiniteGuard
from common.log import Writer, progress, setup_logger, write_metrics
from common.optim import closes_accumulation_window
from common.preempt import PreemptionHandler
from common.profiler import make_profiler
from common.sampler import ResumableSampler
from common.seed import loader_generator, seed_everything, set_deterministic, worker_init_fn
from common.viz import save_png
from stereo.core.model import build_model
from stereo.core.official import load_weights
from stereo.core.pretrained import PretrainedWeightsError
from stereo.train.checkpoints import CheckpointWriter, load_ema_state, remove_stale_temp_files
from stereo.train.cli import LaunchError, check_launch_environment, non_negative_int, positive_int, str2bool
from stereo.train.config import load_config
from stereo.train.dataloader import EvalDataset, SizedBatchSampler, TrainingDataset
from stereo.train.evaluation import EvaluationError, evaluate_dataset, mean_disparity
from stereo.train.objective import build_objective
from stereo.train.resume import (ConfigChangeError, check_fresh_run_folder, check_resume_config, exact_resume_keys,
                                 resolve_checkpoint, run_settings)
from stereo.train.tracking import start_tracking
from stereo.train.utils import build_lr_scheduler, build_optimizer, visualise

# Errors that mean "the command, its config, its data or its run folder is not right" (their messages say what to do).
USER_ERRORS = (ConfigError, ConfigChangeError, FileExistsError, FileNotFoundError, CheckpointError, BadSampleError,
               EvaluationError, LaunchError, PretrainedWeightsError)
DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "train", "stereo_v1.json")
# The guide's "Command Line Options" table (plus --num_vis_images, --enable_profiler, --deterministic). These
# flags default to None on the command line so that a resumed run keeps its own values unless they are given.
RUN_DEFAULTS = {"batch_size_forward": 4, "gradient_accumulation_steps": 1, "enable_gradient_checkpointing": True,
                "enable_mixed_precision": False, "enable_ema": True, "num_iterations": 100000, "save_every": 5000,
                "log_every": 500, "vis_every": 0, "num_vis_images": 32, "enable_mlflow": True, "seed": 0,
                "enable_profiler": False, "deterministic": False}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    flag = lambda name, kind, text: parser.add_argument(
        f"--{name}", type=kind, default=None, help=f"{text} [default: {RUN_DEFAULTS[name]}; a resumed run keeps its own]")
    parser.add_argument("--config", default=None, help="json config [default: configs/train/stereo_v1.json; a "
                        "resumed run keeps its own]")
    parser.add_argument("--workspace", default="workspace/stereo_train", help="run folder [default: %(default)s]")
    parser.add_argument("--checkpoint", default=None, help="'latest', a step number, a checkpoint folder or a .pt file")
    parser.add_argument("--init_from", default=None,
                        help="start from these weights only (a released model_best_bp2.pth or a checkpoint of this "
                             "project); step, optimizer and schedule start fresh")
    parser.add_argument("--allow_config_change", type=str2bool, default=False,
                        help="resume even though settings that break exact resume changed (lr, batch size, ...)")
    flag("batch_size_forward", positive_int, "pairs per forward pass per process")
    flag("gradient_accumulation_steps", positive_int, "forwards per optimizer step")
    flag("enable_gradient_checkpointing", str2bool, "recompute activations in backward (memory)")
    flag("enable_mixed_precision", str2bool, "autocast with train.mixed_precision_dtype (bf16; fp16 adds a GradScaler)")
    flag("enable_ema", str2bool, "EMA of weights and buffers; validation uses it")
    flag("num_iterations", positive_int, "optimizer steps in total")
    flag("save_every", positive_int, "steps between checkpoints")
    flag("log_every", positive_int, "steps between log lines and TensorBoard/MLflow scalars")
    flag("vis_every", non_negative_int, "steps between visualisations (0 = never)")
    flag("num_vis_images", positive_int, "images per visualisation")
    flag("enable_mlflow", str2bool, "MLflow tracking ($MLFLOW_TRACKING_URI, else WORKSPACE/mlflow.db)")
    flag("seed", non_negative_int, "seeds, shuffling and every augmentation draw")
    flag("enable_profiler", str2bool, "torch.profiler trace into tensorboard/")
    flag("deterministic", str2bool, "bitwise-reproducible kernels (slower)")
    return parser


def main(argv=None) -> dict:
    args = get_args_parser().parse_args(argv)
    check_launch_environment()
    # ---------------------------------------------------------------- set-up: which run, which settings
    info = dist.setup()
    logger = setup_logger(args.workspace, packages=("stereo",))
    ckpt_dir = os.path.join(args.workspace, "checkpoint")
    if info.is_main:
        remove_stale_temp_files(ckpt_dir)
    resumed = resolve_checkpoint(args.checkpoint, ckpt_dir)
    saved = resumed.training if resumed is not None else None  # None: fresh run (or weights only, from step 0)
    flags = argparse.Namespace(**run_settings(vars(args), RUN_DEFAULTS, saved and saved.get("settings")))
    config = saved["config"] if saved is not None and args.config is None else load_config(args.config or DEFAULT_CONFIG)
    if saved is not None:
        check_resume_config({key: saved.get(key) for key in ("config", "settings", "world_size")},
                            {"config": config, "settings": vars(flags), "world_size": info.world_size},
                            exact_resume_keys(config), args.allow_config_change)
    check_fresh_run_folder(ckpt_dir, resuming=saved is not None)
    if not config["data"]["datasets"]:
        raise ConfigError("data.datasets is empty: add at least one training dataset (see stereo/README.md)")
    if flags.deterministic:
        set_deterministic(True)
    seed_everything(flags.seed, info.rank)

    # ---------------------------------------------------------------- data
    data_cfg = config["data"]
    dataset = TrainingDataset(data_cfg["datasets"], data_cfg["image_sizes"], data_cfg["stereo_augmentation"],
                              data_cfg["max_disparity"], flags.seed, data_cfg["strict"])
    sampler = ResumableSampler(dataset, info.world_size, info.rank, shuffle=True, seed=flags.seed, drop_last=True)
    batch_sampler = SizedBatchSampler(sampler, flags.batch_size_forward, len(data_cfg["image_sizes"]), flags.seed)
    # The loader's own generator: creating an iterator draws the workers' base seed from it, not from the global
    # torch RNG that a resume restores (and that dropout uses), so a resumed run draws exactly as the original.
    loader_rng = loader_generator(flags.seed)
    loader = DataLoader(dataset, batch_sampler=batch_sampler, num_workers=data_cfg["num_workers"],
                        collate_fn=collate_skipping, pin_memory=info.device.type == "cuda", generator=loader_rng,
                        worker_init_fn=worker_init_fn)
    if len(batch_sampler) == 0:
        raise ValueError(f"{len(dataset)} training pairs give no full batch of {flags.batch_size_forward} per process "
                         f"({info.world_size} processes): lower --batch_size_forward")
    val_sets = [(entry["name"] or f"val{i}", EvalDataset(entry["path"], entry["format"], data_cfg["max_disparity"],
                                                         data_cfg["strict"]))
                for i, entry in enumerate(data_cfg["val_datasets"])]
    bad_samples = BadSampleCounter()

    # ---------------------------------------------------------------- logging (after the data: a missing dataset
    # folder stops the run before a TensorBoard or MLflow run exists for it)
    writer = Writer(os.path.join(args.workspace, "tensorboard"))
    if info.is_main:
        save_config(config, os.path.join(args.workspace, "config.json"))
    tracker = start_tracking(flags.enable_mlflow and info.is_main, args.workspace,
                             {"config": config, "settings": vars(flags), "world_size": info.world_size},
                             run_id=saved.get("mlflow_run_id") if saved is not None else None)
    tracker.artifact(os.path.join(args.workspace, "config.json"))
    precision = amp.parse_precision(config["train"]["mixed_precision_dtype"] if flags.enable_mixed_precision else "fp32")

    # ---------------------------------------------------------------- model, optimizer, EMA
    # Pretrained parts come from model.vit_weights / model.edgenext_weights, or with everything else from
    # --init_from or the resumed checkpoint.
    from_checkpoint = bool(args.init_from) or resumed is not None
    model = build_model(config["model"], load_pretrained=not from_checkpoint)
    if args.init_from and resumed is None:
        load_weights(model, args.init_from)
    model = model.to(info.device)
    model.gradient_checkpointing = flags.enable_gradient_checkpointing
    compute_loss = build_objective(config["loss"])
    optimizer = build_optimizer(model, config["optimizer"])
    scheduler = build_lr_scheduler(optimizer, config["lr_scheduler"], flags.num_iterations)
    scaler = amp.grad_scaler(info.device, precision)
    ema = make_ema(model, config["train"]["ema_decay"]) if flags.enable_ema else None
    guard = NonFiniteGuard(config["train"]["max_nonfinite"], logger)
    step, epoch, batches_done = 0, 0, 0
    if resumed is not None:
        model.load_state_dict(resumed.model)
        if ema is not None and resumed.ema is not None:
            load_ema_state(ema, resumed.ema)
        elif ema is not None:
            ema.module.load_state_dict(resumed.model)  # n_averaged stays 0: the first update restarts the average
        if saved is not None:  # a full training state: continue exactly where it stopped
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["lr_scheduler"])
            scaler.load_state_dict(saved["scaler"])
            guard.load_state_dict(saved["guard"])
            step, epoch, batches_done = saved["step"], saved["epoch"], saved["batches_done"]
            checkpoint.set_rng_state(saved["rng"][info.rank % len(saved["rng"])])
        logger.info("Loaded %s; starting at step %d", resumed.path, step)
    resumed_here = saved is not None and resumed.path.parent.resolve() == Path(ckpt_dir).resolve()
    saver = CheckpointWriter(ckpt_dir, config["train"]["keep_last"], resumed.step if resumed_here else None)
    # find_unused_parameters: the reference's layout (kept so released checkpoints load) has modules its forward
    # never uses.
    ddp_model = DDP(model, device_ids=[info.device] if info.device.type == "cuda" else None,
                    find_unused_parameters=True) if info.distributed else model
    logger.info("Model: %.2fM parameters; %d training pairs; world size %d",
                sum(p.numel() for p in model.parameters()) / 1e6, len(dataset), info.world_size)

    def save() -> None:
        rng_all = [checkpoint.rng_state()]
        if info.distributed:
            rng_all = [None] * info.world_size
            torch.distributed.all_gather_object(rng_all, checkpoint.rng_state())
        if info.is_main:
            saver.save(step, config["model"], model.state_dict(), ema,
                       {"optimizer": optimizer.state_dict(), "lr_scheduler": scheduler.state_dict(),
                        "scaler": scaler.state_dict(), "guard": guard.state_dict(), "epoch": epoch,
                        "batches_done": batches_done, "rng": rng_all, "config": config, "settings": vars(flags),
                        "world_size": info.world_size, "mlflow_run_id": tracker.run_id})
        dist.barrier()

    def run_validation() -> dict:
        eval_model = ema.module if ema is not None else model
        eval_model.eval()

        def predict(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
            with amp.autocast(info.device, precision):
                return eval_model(255 * left, 255 * right, test_mode=True)  # the model takes 0-255, as the reference

        results = {}
        for name, val_set in val_sets:
            metrics = evaluate_dataset(predict, val_set, info.device, skip_bad=not data_cfg["strict"])
            results.update({f"val/{name}/{key}" if len(val_sets) > 1 else f"val/{key}": value
                            for key, value in metrics.items()})
        writer.scalars(results, step)
        tracker.metrics(results, step)
        return results

    def train_mode() -> None:
        model.train()
        if config["train"]["freeze_bn"]:  # BatchNorm uses (and keeps) its running statistics, as RAFT-Stereo
            model.apply(lambda m: m.eval() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) else None)

    # ---------------------------------------------------------------- loop
    train_mode()
    accumulation = flags.gradient_accumulation_steps
    loss_sum, terms_sum, logged = 0.0, {}, 0
    stop = step >= flags.num_iterations
    bar = progress(total=flags.num_iterations, initial=step, desc="train")
    with PreemptionHandler() as preemption, make_profiler(flags.enable_profiler,
                                                          os.path.join(args.workspace, "tensorboard")) as profiler:
        logger.info("Training from step %d to %d", step, flags.num_iterations)
        micro = 0
        while not stop:
            dataset.epoch = epoch
            sampler.set_epoch(epoch)
            sampler.start_at(batches_done * flags.batch_size_forward)  # mid-epoch resume: skip what was seen
            loader_rng.manual_seed(flags.seed + 1_000_003 * (epoch + 1) + 7_919 * info.rank)  # per epoch and rank
            for batch in loader:
                batches_done += 1
                bad_samples.update(batch)
                if empty_on_any_rank(batch):  # all samples unreadable: every rank drops this step together
                    continue
                batch = {k: v.to(info.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
                last_micro = closes_accumulation_window(micro + 1, accumulation)
                # DDP all-reduces gradients in every backward; on accumulation steps that sync is wasted work
                # (only the summed gradient of the last micro-batch matters), so skip it with no_sync.
                sync = contextlib.nullcontext() if last_micro or not info.distributed else ddp_model.no_sync()
                with sync:
                    with amp.autocast(info.device, precision):
                        outputs = ddp_model(255 * batch["left"], 255 * batch["right"])  # 0-255, as the reference
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
                bar.update(1)

                if step % flags.log_every == 0 or step == flags.num_iterations:
                    scalars = {"train/loss": loss_sum / logged, "train/lr": scheduler.get_last_lr()[0],
                               "train/grad_norm": float(grad_norm),
                               **{f"train/{k}": v / logged for k, v in terms_sum.items()}}
                    scalars["train/loss"] = float(dist.all_reduce_mean(torch.tensor(scalars["train/loss"])))
                    writer.scalars(scalars, step)
                    tracker.metrics(scalars, step)
                    bar.set_postfix(loss=f"{scalars['train/loss']:.4f}")
                    logger.info("step %d  loss %.6f  lr %.2e  grad %.3f", step, scalars["train/loss"],
                                scalars["train/lr"], scalars["train/grad_norm"])
                    loss_sum, terms_sum, logged = 0.0, {}, 0
                if flags.vis_every and step % flags.vis_every == 0 and info.is_main:
                    count = flags.num_vis_images
                    grid = visualise(batch["left"][:count], batch["disparity"][:count], batch["valid"][:count],
                                     outputs["disparity"][:count].detach())
                    writer.image("vis/left_gt_pred_error", grid, step)
                    os.makedirs(os.path.join(args.workspace, "vis"), exist_ok=True)
                    save_png(os.path.join(args.workspace, "vis", f"{step:08d}.png"), grid)
                if val_sets and config["train"]["val_every"] and step % config["train"]["val_every"] == 0:
                    logger.info("validation at step %d: %s", step, run_validation())
                    train_mode()
                stop = preemption.stop_requested() or step >= flags.num_iterations
                if step % flags.save_every == 0 or stop:
                    save()
                if stop:
                    break
            else:
                bad_samples.end_epoch(logger, epoch)
                epoch, batches_done = epoch + 1, 0
    bar.close()
    if preemption.received is not None:
        logger.info("Preempted: saved at step %d, exiting.", step)

    # ---------------------------------------------------------------- final validation and metrics.json
    metrics = {"step": step, "train/skipped_nonfinite_steps": guard.skipped_total}
    if val_sets and preemption.received is None:
        metrics.update(run_validation())
        train_mean = mean_disparity(dataset)
        for name, val_set in val_sets:
            key = f"val/{name}/baseline_mean_epe" if len(val_sets) > 1 else "val/baseline_mean_epe"
            metrics[key] = evaluate_dataset(None, val_set, info.device, constant=train_mean,
                                            skip_bad=not data_cfg["strict"])["epe"]
        metrics["train/mean_disparity"] = train_mean
        logger.info("final metrics: %s", metrics)
    write_metrics(args.workspace, metrics)
    tracker.metrics(metrics)
    tracker.artifact(os.path.join(args.workspace, "metrics.json"))
    tracker.end()
    writer.close()
    dist.cleanup()
    return metrics


if __name__ == "__main__":
    try:
        main()
    except USER_ERRORS as exc:  # a message for the person who typed the command, not a traceback
        raise SystemExit(f"train.py: error: {exc}") from None
