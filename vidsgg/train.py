"""Train a video scene-graph model on Action Genome (PredCLS / SGCLS / SGDET).

    python vidsgg/train.py -mode predcls -model sttran -data_path DIR -lr 1e-4 -epochs 10 -save_path RUN
    python vidsgg/train.py -mode sgcls -model sttran -resume_from RUN/checkpoint_best.tar   # progressive
    torchrun --nproc_per_node=4 vidsgg/train.py -mode predcls -model sttran -distributed True

Writes into the run folder: logfile.txt, tensorboard/, config.json, checkpoint_epoch_N.tar,
checkpoint_best.tar (by val R@20, with constraint), checkpoint_last.tar (for -resume_from latest),
checkpoint_final.tar and metrics.json.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from common import amp, checkpoint, dist
from common.data import BadSampleCounter, BadSampleError, SkippedSample
from common.guard import NonFiniteGuard
from common.log import Writer, setup_logger, write_metrics
from common.preempt import PreemptionHandler
from common.profiler import make_profiler
from common.sampler import ResumableSampler
from common.sched import build_scheduler
from common.seed import seed_everything, set_deterministic
from vidsgg import checkpointing
from vidsgg.data.action_genome import collate_videos
from vidsgg.data.curriculum import Curriculum
from vidsgg.engine import (first_good_entry, load_detections, make_store, memory_pass, planned_steps,
                           trainable_names, video_loss)
from vidsgg.models.build import build_model, word_table
from vidsgg.options import train_parser, validate
from vidsgg.tasks import task_for


def run_folder(args) -> Path:
    if args.save_path:
        return Path(args.save_path)
    stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
    return Path("output") / args.dataset / f"{args.model}_{args.mode}_{stamp}"


def main(argv: list[str] | None = None) -> dict:
    parser = train_parser()
    args = validate(parser.parse_args(argv), parser)

    # ------------------------------------------------------------------ set-up
    launched_distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if launched_distributed != args.distributed:
        parser.error("-distributed True needs a torchrun launch with several processes" if args.distributed else
                     "launched with several processes: pass -distributed True")
    info = dist.setup(device=args.device)
    device = info.device
    seed_everything(args.seed, info.rank)
    if args.deterministic:
        set_deterministic(True)
    run_dir = Path(dist.broadcast_object(str(run_folder(args))))
    logger = setup_logger(run_dir, filename="logfile.txt", packages=("vidsgg",))
    writer = Writer(run_dir / "tensorboard")
    if info.is_main:
        (run_dir / "config.json").write_text(json.dumps(vars(args), indent=2))
    logger.info("Command: %s", " ".join(sys.argv))
    precision = torch.bfloat16 if args.use_amp else torch.float32

    # ------------------------------------------------------------------ data
    task = task_for(args.dataset)  # Action Genome or EASG: dataset class, entry builder, evaluator
    train_set = task.dataset(args.data_path, "train", args.mode, args.datasize)
    val_set = task.dataset(args.data_path, "test", args.mode, args.datasize)

    curriculum = Curriculum(train_set, args.curriculum_boundaries)

    def epoch_loader(epoch: int) -> tuple[ResumableSampler, DataLoader]:
        """This epoch's videos (all of them, or the curriculum's easiest share), sharded over the ranks."""
        videos = curriculum.subset(epoch)
        sampler = ResumableSampler(videos, info.world_size, info.rank, shuffle=True, seed=args.seed)
        sampler.set_epoch(epoch)
        return sampler, DataLoader(videos, batch_size=args.batch_size, sampler=sampler, collate_fn=collate_videos,
                                   num_workers=args.num_workers)

    store = make_store(args, device)
    detections = load_detections(args.detections)
    bad_samples = BadSampleCounter()

    # ------------------------------------------------------------------ model, optimiser
    model = build_model(args, store.extractor.c4, store.extractor.c3, word_table(args), train_set).to(device)
    logger.info("Model %s (%s): %d trainable parameters", args.model, args.mode,
                sum(p.numel() for p in model.parameters() if p.requires_grad))
    groups = model.parameter_groups(args.lr)
    optimizer = torch.optim.AdamW(groups, lr=args.lr, weight_decay=args.weight_decay)
    total_steps = planned_steps(lambda epoch: -(-len(curriculum.subset(epoch)) // info.world_size), args)
    scheduler = build_scheduler(optimizer, args.scheduler, args.warmup_steps, total_steps,
                                step_size=max(1, total_steps // 3), gamma=0.5 if args.scheduler == "plateau" else 0.1,
                                patience=1, plateau_mode="max")
    scaler = amp.grad_scaler(device, precision)
    guard = NonFiniteGuard(max_consecutive=20, logger=logger)
    step, start_epoch, batches_done = 0, 0, 0
    stopping = {"best": float("-inf"), "bad_evals": 0, "best_epoch": -1}

    path, state = checkpointing.resolve(args.resume_from, run_dir)
    if state is not None and checkpointing.is_exact_resume(state, args):
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        guard.load_state_dict(state["guard"])
        stopping = dict(state["early_stopping"])
        step, start_epoch, batches_done = state["step"], state["epoch"], state["batches_done"]
        checkpoint.set_rng_state(state["rng"][info.rank])
        logger.info("Resumed from %s at epoch %d, step %d", path, start_epoch, step)
    elif state is not None:
        loaded, skipped = checkpointing.load_compatible(model, state["model"])
        logger.info("Progressive training: %d tensors from %s (%s %s), %d skipped: %s", len(loaded), path,
                    state.get("model_name"), state.get("mode"), len(skipped), skipped[:6])
    ddp_model, wrapped_for = model, None

    def save(name: str, epoch: int, batches: int) -> None:
        rng_all = checkpointing.gather_rng(info.distributed, info.world_size)
        if info.is_main:
            checkpoint.save(run_dir / name, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "guard": guard.state_dict(),
                "early_stopping": stopping, "step": step, "epoch": epoch, "batches_done": batches, "rng": rng_all,
                "config": vars(args), "model_name": args.model, "mode": args.mode, "model_config": model.config_dict()})
        dist.barrier()

    # ------------------------------------------------------------------ loop
    metrics, last_good, stop, preempted = {}, None, False, False
    profiler = make_profiler(args.profile, run_dir / "profile")
    with PreemptionHandler() as preemption, profiler:
        for epoch in range(start_epoch, args.epochs):
            if args.max_steps and step >= args.max_steps:
                break
            model.start_epoch(epoch)  # e.g. SceneLLM keeps its LoRA adapters frozen for some epochs
            if info.distributed and trainable_names(model) != wrapped_for:  # DDP hooks the trainable set once
                ddp_model, wrapped_for = DDP(model), trainable_names(model)
            sampler, loader = epoch_loader(epoch)
            sampler.start_at(batches_done * args.batch_size)  # mid-epoch resume: skip the batches already seen
            batches_in_epoch = -(-sampler.num_samples // args.batch_size)
            model.train()
            epoch_start, loss_sum, loss_count = time.time(), 0.0, 0
            for batch_index, batch in enumerate(loader, start=batches_done):
                boundary = (batch_index + 1) % args.accumulate_grad_batches == 0 or batch_index + 1 == batches_in_epoch
                # Every rank runs the same number of forwards per step (DDP broadcasts buffers in each), so a bad
                # video is replaced by the last good one with weight 0.
                entries = []
                for sample in batch:
                    try:
                        last_good = task.prepare_entry(sample, args.mode, store, device, True, detections)
                        entries.append((last_good, 1.0))
                    except BadSampleError as exc:
                        if args.strict_data:
                            raise
                        bad_samples.update({"skipped": [SkippedSample(sample["video"], str(exc))]})
                        logger.warning("Skipping video %s: %s", sample["video"], exc)
                        last_good = last_good or first_good_entry(task, train_set, args.mode, store, device,
                                                                  detections)
                        entries.append((last_good, 0.0))
                weight_sum = max(1.0, sum(w for _, w in entries))
                sync = ddp_model.no_sync() if info.distributed and not boundary else contextlib.nullcontext()
                with sync, amp.autocast(device, precision):
                    loss, parts = 0.0, {}
                    for entry, weight in entries:
                        video_total, video_parts = video_loss(ddp_model, entry, args.bce_loss)
                        loss = loss + weight * video_total / weight_sum
                        for k, v in video_parts.items():
                            parts[k] = parts.get(k, 0.0) + weight * v / weight_sum
                    scaler.scale(loss / args.accumulate_grad_batches).backward()
                batches_done = batch_index + 1
                loss_sum, loss_count = loss_sum + float(loss.detach()), loss_count + 1
                if not boundary:
                    continue
                scaler.unscale_(optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(),
                                                           args.clip_grad if args.clip_grad > 0 else float("inf"))
                if guard.check(loss, grad_norm, step):
                    scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                step += 1
                profiler.step()
                writer.scalar("train/loss", dist.all_reduce_mean(loss.detach()), step)
                writer.scalars({f"train/loss_{k}": v for k, v in parts.items()}, step)
                writer.scalar("train/lr", optimizer.param_groups[0]["lr"], step)
                writer.scalar("train/grad_norm", grad_norm, step)
                if preemption.stop_requested():
                    save(checkpointing.LATEST, epoch, batches_done)
                    logger.info("Preempted: saved %s at epoch %d, step %d; exiting.", checkpointing.LATEST, epoch, step)
                    preempted = True
                    break
                if args.max_steps and step >= args.max_steps:  # SceneLLM -stage1/2_iterations: the stage is over
                    logger.info("Reached %d optimizer steps (stage iteration cap); finishing.", args.max_steps)
                    break
            if preempted:
                break
            batches_done = 0
            bad_samples.end_epoch(logger, epoch + 1)
            epoch_loss = float(dist.all_reduce_mean(loss_sum / max(1, loss_count)))
            logger.info("Epoch %d/%d - Loss: %.4f - LR: %.3g - Time: %.0fs", epoch + 1, args.epochs, epoch_loss,
                        optimizer.param_groups[0]["lr"], time.time() - epoch_start)
            metrics.update({"train/loss": epoch_loss, "epoch": epoch + 1})
            if model.has_memory:  # TEMPURA: prototypes from this epoch's embeddings
                memory_pass(model, train_set, store, args.mode, device, info.rank, info.world_size, detections)

            if (epoch + 1) % args.eval_freq == 0 or epoch + 1 == args.epochs:
                results = None
                if info.is_main:  # evaluation on rank 0 with the bare model; the others wait
                    results = task.evaluate(model, val_set, store, args.mode, device, args.mean_recall, detections,
                                            args.max_eval_videos, args.strict_data)
                results = dist.broadcast_object(results)
                recall20 = results["with/R@20"]
                logger.info("Epoch %d/%d - Eval - Recall@10: %.1f - Recall@20: %.1f - Recall@50: %.1f - "
                            "mRecall@20: %.1f", epoch + 1, args.epochs, 100 * results["with/R@10"], 100 * recall20,
                            100 * results["with/R@50"], 100 * results["with/mR@20"])
                writer.scalars({f"val/{k}": v for k, v in results.items()}, epoch + 1)
                metrics.update({f"val/{k}": v for k, v in results.items()})
                if args.scheduler == "plateau":
                    scheduler.step(recall20)
                if recall20 > stopping["best"] + args.early_stopping_min_delta:
                    stopping.update(best=recall20, bad_evals=0, best_epoch=epoch + 1)
                    save("checkpoint_best.tar", epoch + 1, 0)
                else:
                    stopping["bad_evals"] += 1
                stop = 0 < args.early_stopping_patience <= stopping["bad_evals"]
            if (epoch + 1) % args.save_freq == 0:
                save(f"checkpoint_epoch_{epoch + 1}.tar", epoch + 1, 0)
                if info.is_main:
                    checkpoint.prune(run_dir, args.keep_last, r"checkpoint_epoch_(\d+)\.tar")
            save(checkpointing.LATEST, epoch + 1, 0)
            if stop:
                logger.info("Early stopping: val R@20 did not improve by %.4g for %d evaluations (best %.4f at "
                            "epoch %d).", args.early_stopping_min_delta, stopping["bad_evals"], stopping["best"],
                            stopping["best_epoch"])
                break

    if not preempted:
        save("checkpoint_final.tar", metrics.get("epoch", start_epoch), 0)
    metrics.update({"best/R@20": stopping["best"], "best/epoch": stopping["best_epoch"], "step": step,
                    "stopped_early": float(stop), "cache/hits": store.hits, "cache/misses": store.misses})
    write_metrics(run_dir, metrics)
    writer.close()
    dist.cleanup()
    return metrics


if __name__ == "__main__":
    main()
