"""Train a video scene-graph model on Action Genome (PredCLS / SGCLS / SGDET) or EASG.

    python vidsgg/train.py -mode predcls -model sttran -data_path DIR -lr 1e-4 -epochs 10 -save_path RUN
    python vidsgg/train.py -mode sgcls -model sttran -resume_from RUN/checkpoint_best.tar   # progressive
    python vidsgg/train.py -mode predcls -model sttran -save_path RUN -resume_from latest  # continue RUN
    python vidsgg/train.py -mode predcls -model sttran -init_from predcls.tar   # from STTran's released weights
    torchrun --nproc_per_node=4 vidsgg/train.py -mode predcls -model sttran -distributed True

Writes into the run folder: logfile.txt, tensorboard/, config.json, checkpoint_step_S.tar (resumable, newest
kept; checkpoint_last.tar links the newest), checkpoint_epoch_N.tar, checkpoint_best.tar (by val R@20, with
constraint), checkpoint_final.tar and metrics.json (see vidsgg/checkpointing.py).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from datetime import datetime
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader

from common import amp, checkpoint, dist
from common.data import BadSampleCounter, BadSampleError, SkippedSample
from common.guard import NonFiniteGuard
from common.log import Writer, progress, setup_logger, write_metrics
from common.optim import closes_accumulation_window
from common.preempt import PreemptionHandler
from common.profiler import make_profiler
from common.sampler import ResumableSampler
from common.sched import build_scheduler
from common.seed import loader_generator, seed_everything, set_deterministic
from vidsgg import checkpointing
from vidsgg.checkpointing import ResumeError
from vidsgg.data.action_genome import collate_videos
from vidsgg.data.curriculum import Curriculum
from vidsgg.passes import (first_good_entry, load_detections, make_store, memory_pass, planned_steps,
                           trainable_names, video_loss)
from vidsgg.evaluation import skipped_evaluations
from vidsgg.models.build import build_model, word_table
from vidsgg.models.reference import ReferenceWeightsError, is_reference_checkpoint
from vidsgg.option_checks import parse_train_args
from vidsgg.tasks import task_for


def run_folder(args, resumed: Path | None = None) -> Path:
    """-save_path; else the folder of the checkpoint resumed exactly; else a new timestamped folder."""
    if args.save_path:
        return Path(args.save_path)
    if resumed is not None:
        return resumed.parent
    stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
    return Path("output") / args.dataset / f"{args.model}_{args.mode}_{stamp}"


def main(argv: list[str] | None = None) -> dict:
    args = parse_train_args(sys.argv[1:] if argv is None else argv)
    info = dist.setup(device=args.device)
    try:
        if args.scenellm_stages:
            return train_scenellm_stages(args, info)
        return train(args, info)
    except (ResumeError, ReferenceWeightsError) as exc:
        raise SystemExit(f"vidsgg/train.py: error: {exc}") from exc
    finally:
        dist.cleanup()


def train_scenellm_stages(args: argparse.Namespace, info) -> dict:
    """SceneLLM without -scenellm_stage: the VQ-VAE into RUN/vqvae, then the relation stage (stage1, or stage2
    with LoRA fine-tuning) into RUN from the VQ-VAE's final weights. `-resume_from latest` continues where the
    interrupted stage was."""
    run_dir = Path(dist.broadcast_object(str(run_folder(args))))
    vqvae_dir, final_stage = run_dir / "vqvae", args.scenellm_stages[-1]
    resuming = args.resume_from is not None

    def stage(**changes) -> argparse.Namespace:
        return argparse.Namespace(**{**vars(args), "scenellm_stages": None, **changes})

    if not (resuming and (vqvae_dir / "checkpoint_final.tar").is_file()):
        train(stage(scenellm_stage="vqvae", epochs=args.vqvae_epochs, eval_freq=args.vqvae_epochs, max_steps=0,
                    llm_lr=None, freeze_llm_epochs=None, stage1_iterations=None, stage2_iterations=None,
                    save_path=str(vqvae_dir)), info)
    own = resuming and any(run_dir.glob("checkpoint_step_*.tar"))
    return train(stage(scenellm_stage=final_stage, vqvae_epochs=None, save_path=str(run_dir),
                       resume_from="latest" if own else str(vqvae_dir / "checkpoint_final.tar")), info)


def train(args: argparse.Namespace, info) -> dict:
    # ------------------------------------------------------------------ set-up
    device = info.device
    seed_everything(args.seed, info.rank)
    if args.deterministic:
        set_deterministic(True)
    resume_file = None if str(args.resume_from).lower() in (*checkpointing.RESUME_WORDS, "none") else args.resume_from
    path, state = checkpointing.resolve(resume_file, Path("."))  # a file: read now, its folder may be the run's
    exact = state is not None and checkpointing.is_exact_resume(state, args)
    run_dir = Path(dist.broadcast_object(str(run_folder(args, path if exact else None))))
    logger = setup_logger(run_dir, filename="logfile.txt", packages=("vidsgg",))
    if resume_file is None and args.resume_from is not None:  # 'latest': the newest valid checkpoint of the run
        path, state = checkpointing.resolve(args.resume_from, run_dir)
        exact = state is not None and checkpointing.is_exact_resume(state, args)
    if state is not None and is_reference_checkpoint(state):
        logger.info("-resume_from %s is a released reference checkpoint: it holds weights only (no optimizer, "
                    "schedule or step), so this is a new run from those weights at step 0, as -init_from does.", path)
    if args.init_from and exact:
        logger.info("-init_from %s not used: the run continues from its own checkpoint %s.", args.init_from, path)
    elif args.init_from:  # no checkpoint of the run yet (-resume_from latest) or no -resume_from
        path, state = Path(args.init_from), checkpointing.load(args.init_from)
    checkpointing.check_fresh_run_folder(run_dir, path if exact else None)
    if exact and state.get("format") != "guide":  # the guide's format has no schedule to keep exact
        checkpointing.check_resume_config(state["config"], {**vars(args), "world_size": info.world_size},
                                          args.allow_config_change)
    if info.is_main:
        checkpointing.remove_stale_temp_files(run_dir)
        (run_dir / "config.json").write_text(json.dumps(vars(args), indent=2))
    writer = Writer(run_dir / "tensorboard")
    logger.info("Command: %s", " ".join(sys.argv))
    for notice in args.notices:
        logger.info("Note: %s", notice)
    precision = torch.bfloat16 if args.use_amp else torch.float32

    # ------------------------------------------------------------------ data
    task = task_for(args.dataset)  # Action Genome or EASG: dataset class, entry builder, evaluator
    splits = {split: task.dataset(args.data_path, split, args.mode, args.datasize,
                                  allow_outside_data=args.allow_outside_data) for split in ("train", "test")}
    train_set, val_set = splits["train"], splits["test"]

    curriculum = Curriculum(train_set, args.curriculum_boundaries)

    def epoch_loader(epoch: int) -> tuple[ResumableSampler, DataLoader]:
        """This epoch's videos (all of them, or the curriculum's easiest share), sharded over the ranks. The loader
        has its own generator: creating its iterator must not draw from the global RNG (dropout's), or a resumed
        run would see other random numbers than the uninterrupted one."""
        videos = curriculum.subset(epoch)
        sampler = ResumableSampler(videos, info.world_size, info.rank, shuffle=True, seed=args.seed)
        sampler.set_epoch(epoch)
        return sampler, DataLoader(videos, batch_size=args.batch_size, sampler=sampler, collate_fn=collate_videos,
                                   num_workers=args.num_workers, generator=loader_generator(args.seed + epoch))

    store = make_store(args, device)
    detections = load_detections(args.detections)
    bad_samples = BadSampleCounter()

    # ------------------------------------------------------------------ model, optimiser
    model = build_model(args, store.extractor.c4, store.extractor.c3, word_table(args), train_set).to(device)
    logger.info("Model %s (%s): %d trainable parameters", args.model, args.mode,
                sum(p.numel() for p in model.parameters() if p.requires_grad))
    groups = model.parameter_groups(args.lr)
    optimizer = torch.optim.AdamW(groups, lr=args.lr, weight_decay=args.weight_decay)

    def videos_per_rank(epoch: int) -> int:
        return -(-len(curriculum.subset(epoch)) // info.world_size)

    total_steps = planned_steps(videos_per_rank, args)
    scheduler = build_scheduler(optimizer, args.scheduler, args.warmup_steps, total_steps,
                                step_size=max(1, total_steps // 3), gamma=0.5 if args.scheduler == "plateau" else 0.1,
                                patience=1, plateau_mode="max")
    scaler = amp.grad_scaler(device, precision)
    guard = NonFiniteGuard(max_consecutive=20, logger=logger)
    step, start_epoch, batches_done, epoch_loss = 0, 0, 0, float("nan")
    running = {"sum": 0.0, "count": 0}  # this epoch's training loss so far (in checkpoints: mid-epoch resume)
    stopping = {"best": float("-inf"), "bad_evals": 0, "best_epoch": -1}

    if exact and state.get("format") == "guide":
        step = resume_from_guide_format(state, model, optimizer, scheduler, args, info, videos_per_rank)
        start_epoch, epoch_loss = state["epoch"], float(state.get("loss") or float("nan"))
        logger.info("Resumed from %s (the guide's manual format: weights%s only) at epoch %d, step %d; the "
                    "schedule is recomputed and the RNG reseeded, so this is not a bit-exact resume.", path,
                    " and optimizer" if "optimizer" in state else "", start_epoch, step)
    elif exact:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        guard.load_state_dict(state["guard"])
        stopping = dict(state["early_stopping"])
        step, start_epoch, batches_done = state["step"], state["epoch"], state["batches_done"]
        running = dict(state.get("running_loss", running))
        epoch_loss = state.get("loss", epoch_loss)
        checkpoint.set_rng_state(state["rng"][info.rank])
        logger.info("Resumed from %s at epoch %d, step %d (batch %d of the epoch)", path, start_epoch, step,
                    batches_done)
    elif state is not None:  # weights only: -init_from, a released file, or another mode/model (progressive)
        initialise_from(model, path, state, args, logger)
    ddp_model, wrapped_for = model, None
    written: list[Path] = []  # files this run wrote: the only ones pruning may delete

    def save(name: str, epoch: int, batches: int) -> Path:
        rng_all = checkpointing.gather_rng(info.distributed, info.world_size)
        if info.is_main:
            checkpoint.save(run_dir / name, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "guard": guard.state_dict(),
                "early_stopping": stopping, "step": step, "epoch": epoch, "batches_done": batches,
                "running_loss": dict(running) if batches else {"sum": 0.0, "count": 0}, "loss": epoch_loss,
                "rng": rng_all, "config": vars(args), "world_size": info.world_size, "model_name": args.model,
                "mode": args.mode, "model_config": model.config_dict()})
            written.append(run_dir / name)
        dist.barrier()
        return run_dir / name

    def save_resumable(epoch: int, batches: int) -> None:
        """checkpoint_step_<step>.tar (+ checkpoint_last.tar linked to it), older ones of this run pruned."""
        newest = save(f"checkpoint_step_{step}.tar", epoch, batches)
        if info.is_main:
            checkpointing.link_latest(run_dir, newest)
            checkpointing.prune(run_dir, args.keep_last, checkpointing.STEP_PATTERN, written,
                                keep=(newest, path) if path else (newest,))

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
            epoch_start = time.time()
            batches = progress(loader, total=batches_in_epoch, initial=batches_done, desc=f"epoch {epoch + 1}")
            for batch_index, batch in enumerate(batches, start=batches_done):
                boundary = closes_accumulation_window(batch_index + 1, args.accumulate_grad_batches,
                                                      epoch_ends=batch_index + 1 == batches_in_epoch)
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
                running["sum"], running["count"] = running["sum"] + float(loss.detach()), running["count"] + 1
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
                    save_resumable(epoch, batches_done)
                    logger.info("Preempted: saved checkpoint_step_%d.tar at epoch %d, batch %d; exiting.", step,
                                epoch, batches_done)
                    preempted = True
                    break
                if args.save_every_steps and step % args.save_every_steps == 0:
                    save_resumable(epoch, batches_done)
                if args.max_steps and step >= args.max_steps:  # SceneLLM -stage1/2_iterations: the stage is over
                    logger.info("Reached %d optimizer steps (stage iteration cap); finishing.", args.max_steps)
                    break
            if preempted:
                break
            batches_done = 0
            bad_samples.end_epoch(logger, epoch + 1)
            epoch_loss = float(dist.all_reduce_mean(running["sum"] / max(1, running["count"])))
            running = {"sum": 0.0, "count": 0}
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
                    results.update(skipped_evaluations(val_set, results, args.max_eval_videos))
                    results["loss"] = validation_loss(model, task, val_set, store, args, device, detections)
                    for name, weights in model.named_parameters():  # the trained ones and the frozen
                        writer.histogram(f"weights/{name}", weights.detach().float().cpu(), epoch + 1)
                results = dist.broadcast_object(results)
                recall20 = results["with/R@20"]
                logger.info("Epoch %d/%d - Eval - Recall@10: %.1f - Recall@20: %.1f - Recall@50: %.1f - "
                            "mRecall@20: %.1f - Loss: %.4f", epoch + 1, args.epochs, 100 * results["with/R@10"],
                            100 * recall20, 100 * results["with/R@50"], 100 * results["with/mR@20"], results["loss"])
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
                    checkpointing.prune(run_dir, args.keep_last, checkpointing.EPOCH_PATTERN, written)
            save_resumable(epoch + 1, 0)
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
    return metrics


@torch.no_grad()
def validation_loss(model, task, dataset, store, args: argparse.Namespace, device, detections) -> float:
    """Mean training loss over the evaluated validation videos, in eval mode (no dropout, no GMM sampling); the
    entries are built as for training (SGDET: detections matched to the GT), so the loss has its targets."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for index in range(len(dataset) if args.max_eval_videos <= 0 else min(args.max_eval_videos, len(dataset))):
        try:
            entry = task.prepare_entry(dataset[index], args.mode, store, device, True, detections)
        except BadSampleError:
            continue  # counted by the evaluation
        if len(entry["pair_idx"]):
            total, count = total + float(video_loss(model, entry, args.bce_loss)[0]), count + 1
    model.train(was_training)
    return total / count if count else float("nan")


def initialise_from(model, path: Path, state: dict, args: argparse.Namespace, logger) -> None:
    """A new run from the weights of `state` (read from `path`), with a fresh optimizer and schedule: a released
    reference checkpoint through the reference's key mapping (every tensor, or an error listing the keys); a
    checkpoint of this project through its tensors whose names and shapes match."""
    if is_reference_checkpoint(state):
        checkpointing.load_released(model, state, path, args.model, args.backbone_weights)
        logger.info("Initialised from the released %s weights %s (%s): every tensor of the model; fresh optimizer "
                    "and schedule from step 0.", args.model, path, args.mode)
        return
    loaded, skipped = checkpointing.load_compatible(model, state["model"])
    kind = "Initialised" if args.init_from else "Progressive training"
    logger.info("%s: %d tensors from %s (%s %s), %d skipped: %s; fresh optimizer and schedule from step 0.", kind,
                len(loaded), path, state.get("model_name"), state.get("mode"), len(skipped), skipped[:6])


def resume_from_guide_format(state: dict, model, optimizer, scheduler, args, info, videos_per_rank) -> int:
    """Weights (and optimizer) of a checkpoint in the guide's manual format; the schedule continues from the
    optimizer step that `epoch` finished epochs make (returned), the RNG is reseeded for that epoch."""
    model.load_state_dict(state["model"])
    if "optimizer" in state:
        optimizer.load_state_dict(state["optimizer"])
    done = planned_steps(videos_per_rank, argparse.Namespace(**{**vars(args), "epochs": state["epoch"]}))
    if isinstance(scheduler, LambdaLR):
        scheduler.last_epoch = done  # the next scheduler.step() sets the lr of step done + 1
    else:
        scheduler.steps = done       # warmup-then-plateau: the optimizer's saved lr holds the plateau's cuts
    seed_everything(args.seed + 1000 * state["epoch"], info.rank)
    return done


if __name__ == "__main__":
    main()
