"""A tiny but complete training loop on `common/`, used by the DDP, resume and preemption tests.

It is also the shape every project's loop follows: set-up, data, model, loop, checkpoint.
    python tests/common/tiny_train.py --run_dir R --steps 40
    torchrun --standalone --nproc_per_node=2 tests/common/tiny_train.py --run_dir R --steps 40
"""
from __future__ import annotations

import argparse
import os
import signal

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, Dataset

from common import checkpoint, dist
from common.guard import NonFiniteGuard
from common.log import Writer, setup_logger, write_metrics
from common.preempt import PreemptionHandler
from common.sampler import ResumableSampler
from common.seed import sample_rng, seed_everything, set_deterministic


class NoisyLine(Dataset):
    """y = 3x - 1 with per-sample noise drawn from sample_rng(seed, epoch, index), so resumes replay exactly."""

    def __init__(self, size: int = 64, seed: int = 0):
        self.size, self.seed, self.epoch = size, seed, 0

    def __len__(self):
        return self.size

    def __getitem__(self, index):
        rng = sample_rng(self.seed, self.epoch, index)
        x = torch.tensor([index / self.size, rng.normal()], dtype=torch.float32)
        return {"x": x, "y": torch.tensor([3 * x[0] - 1 + 0.1 * rng.normal()], dtype=torch.float32)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--run_dir", required=True)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--save_every", type=int, default=10)
    parser.add_argument("--resume", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--die_at_step", type=int, default=-1, help="test hook: SIGKILL itself at this step")
    parser.add_argument("--signal_at_step", type=int, default=-1, help="test hook: SIGTERM itself at this step")
    parser.add_argument("--dump_dir", default=None, help="test hook: every rank writes its final weights here")
    args = parser.parse_args()

    info = dist.setup(device="cpu")
    set_deterministic(True)
    seed_everything(args.seed, info.rank)
    ckpt_dir = os.path.join(args.run_dir, "checkpoints")
    logger = setup_logger(args.run_dir)
    writer = Writer(os.path.join(args.run_dir, "tb"))

    dataset = NoisyLine(seed=args.seed)
    sampler = ResumableSampler(dataset, num_replicas=info.world_size, rank=info.rank, seed=args.seed, drop_last=True)
    loader = DataLoader(dataset, batch_size=args.batch_size, sampler=sampler, drop_last=True)

    model = nn.Sequential(nn.Linear(2, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    guard = NonFiniteGuard(max_consecutive=5, logger=logger)
    step, epoch, batches_done = 0, 0, 0

    if info.is_main:
        checkpoint.check_fresh_run_folder(args.run_dir, resuming=checkpoint.parse_resume_spec(args.resume)[0] != "fresh")
        checkpoint.remove_stale_temp_files(ckpt_dir)
    path, state = checkpoint.resolve_resume(args.resume, ckpt_dir)
    if state is not None:
        checkpoint.check_resume_config(state["config"], vars(args), exact_keys=["batch_size", "seed"],
                                       ignore=["resume", "steps", "die_at_step", "signal_at_step", "dump_dir"])
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        guard.load_state_dict(state["guard"])
        step, epoch, batches_done = state["step"], state["epoch"], state["batches_done"]
        checkpoint.restore_rng_states(state["rng"])
        logger.info("Resumed from %s at step %d", path, step)
    if info.distributed and info.device.type == "cuda":
        # Synchronised BatchNorm statistics; SyncBatchNorm is CUDA-only, and on CPU DDP instead broadcasts
        # rank 0's buffers at every forward (broadcast_buffers=True).
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ddp_model = DDP(model) if info.distributed else model

    def save():
        rng_all = checkpoint.gather_rng_states()  # a collective: every rank takes part
        if info.is_main:
            path = checkpoint.save(os.path.join(ckpt_dir, f"step_{step:06d}.pt"), {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "guard": guard.state_dict(),
                "step": step, "epoch": epoch, "batches_done": batches_done, "rng": rng_all,
                "config": vars(args)})
            checkpoint.prune(ckpt_dir, keep_last=3, keep=[path])
        dist.barrier()

    with PreemptionHandler() as preemption:
        stop = False
        while step < args.steps and not stop:
            dataset.epoch = epoch
            sampler.set_epoch(epoch)
            sampler.start_at(batches_done * args.batch_size)  # mid-epoch resume: skip what was already seen
            for batch in loader:
                loss = nn.functional.mse_loss(ddp_model(batch["x"]), batch["y"])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                if guard.check(loss, grad_norm, step):
                    optimizer.step()
                step, batches_done = step + 1, batches_done + 1
                writer.scalar("train/loss", dist.all_reduce_mean(loss), step)
                if step == args.die_at_step:
                    os.kill(os.getpid(), signal.SIGKILL)
                if step == args.signal_at_step:
                    os.kill(os.getpid(), signal.SIGTERM)
                stop = preemption.stop_requested()
                if step % args.save_every == 0 or stop:
                    save()
                if stop or step >= args.steps:
                    break
            else:
                epoch, batches_done = epoch + 1, 0
        if stop:
            logger.info("Preempted: saved at step %d, exiting.", step)

    write_metrics(args.run_dir, {"train/loss": dist.all_reduce_mean(loss).item(), "step": step})
    if args.dump_dir:
        os.makedirs(args.dump_dir, exist_ok=True)
        torch.save({"model": model.state_dict(), "mean_of_ranks": dist.all_reduce_mean(torch.tensor(float(info.rank)))},
                   os.path.join(args.dump_dir, f"rank{info.rank}.pt"))
    writer.close()
    dist.cleanup()


if __name__ == "__main__":
    main()
