"""How many training processes `python train_ddp.py` runs: one per GPU, as the guide promises ("automatic GPU
detection and usage"), without the user typing torchrun.

When train_ddp.py was not started by a launcher (no WORLD_SIZE) and the config asks for several GPUs
(`trainer_params.gpus: -1` with 2+ visible, or `gpus: N`), it re-launches itself through torchrun's own API
(`torch.distributed.run`, standalone rendezvous on this machine): the same as typing
`torchrun --standalone --nproc_per_node=N train_ddp.py ...`. Under torchrun or srun it runs as it was started.
"""
from __future__ import annotations

import os
import signal


def started_by_launcher() -> bool:
    """True under torchrun (WORLD_SIZE is set) or srun with several tasks (common.dist reads SLURM's variables)."""
    return "WORLD_SIZE" in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) > 1


def processes_to_launch(gpus: int, visible_gpus: int, launched: bool) -> int:
    """The number of training processes to start here: 1 means "run in this process".

    gpus: trainer_params.gpus (-1 every visible GPU, 0 the CPU, N that many GPUs); visible_gpus:
    torch.cuda.device_count(); launched: started_by_launcher()."""
    if launched or gpus == 0:
        return 1
    if gpus == -1:
        return max(visible_gpus, 1)  # no GPU: one process on the CPU
    if gpus > visible_gpus:
        raise ValueError(f"trainer_params.gpus={gpus}, but {visible_gpus} GPU(s) are visible "
                         "(CUDA_VISIBLE_DEVICES / nvidia-smi); use gpus=-1 for all of them, or 0 for the CPU")
    return gpus


def relaunch(nproc: int, script: str, argv: list[str]) -> None:
    """Run `script argv` in `nproc` processes through torchrun's API; returns when all of them have finished
    (raises torch's ChildFailedError, naming the failed rank, when one fails)."""
    from torch.distributed.run import main as torchrun

    # SLURM (and a terminal's process group) deliver SIGUSR1 to every process: the workers save a checkpoint and
    # exit 0, while this launcher, whose default action would be to die and orphan them, ignores it.
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    torchrun(["--standalone", f"--nproc_per_node={nproc}", os.path.abspath(script), *argv])
