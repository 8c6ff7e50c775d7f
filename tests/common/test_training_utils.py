"""amp, ema, sched, seed, sampler, guard, preempt, profiler."""
import os
import signal

import numpy as np
import pytest
import torch
from torch import nn

from common import amp
from common.ema import make_ema
from common.guard import NonFiniteGuard, NonFiniteLossError
from common.preempt import PreemptionHandler
from common.profiler import make_profiler
from common.sampler import ResumableSampler
from common.sched import build_scheduler
from common.seed import loader_generator, sample_rng, seed_everything


def test_precision_parsing_and_scaler_only_for_fp16():
    assert amp.parse_precision("bf16") == torch.bfloat16
    assert amp.parse_precision(None) == torch.float32 and amp.parse_precision(True) == torch.bfloat16
    with pytest.raises(ValueError, match="fp64"):
        amp.parse_precision("fp64")
    assert not amp.grad_scaler("cpu", torch.bfloat16).is_enabled()
    with amp.autocast("cpu", torch.bfloat16):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="fp16"):
        amp.autocast("cpu", torch.float16)


def test_ema_tracks_parameters_and_batchnorm_buffers():
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    ema = make_ema(model, decay=0.5)
    ema.update_parameters(model)  # AveragedModel's first update copies
    old_mean, old_weight = model[1].running_mean.clone(), model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model(torch.randn(8, 3) * 5 + 3)  # moves the running statistics
    ema.update_parameters(model)
    assert torch.allclose(ema.module[1].running_mean, 0.5 * old_mean + 0.5 * model[1].running_mean)
    assert torch.allclose(ema.module[0].weight, old_weight + 0.5)


@pytest.mark.parametrize("kind", ["constant", "cosine", "step", "exponential"])
def test_schedules_warm_up_linearly_then_decay(kind):
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(optimizer, kind, warmup_steps=4, total_steps=14, step_size=5, gamma=0.5)
    lrs = []
    for _ in range(14):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[:5] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])
    expected_end = {"constant": 1.0, "cosine": 0.0245, "step": 0.5, "exponential": 0.5**9}[kind]
    assert lrs[-1] == pytest.approx(expected_end, abs=1e-3)


def test_plateau_schedule_reduces_after_patience():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(optimizer, "plateau", warmup_steps=2, patience=1, gamma=0.1)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5)
    scheduler.step(), scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1.0)
    for metric in (1.0, 1.0, 1.0):
        scheduler.step(metric)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)


def test_seed_and_sample_rng_are_reproducible():
    seed_everything(5, rank=1)
    a = torch.rand(3)
    seed_everything(6, rank=0)
    assert torch.equal(a, torch.rand(3))
    assert sample_rng(1, 2, 3).random() == sample_rng(1, 2, 3).random()
    assert sample_rng(1, 2, 3).random() != sample_rng(1, 3, 3).random()


def test_loader_generator_keeps_dataloaders_off_the_global_rng():
    torch.manual_seed(0)
    untouched = torch.rand(3)
    loader = torch.utils.data.DataLoader(list(range(10)), batch_size=4, shuffle=True, generator=loader_generator(1))
    torch.manual_seed(0)
    first = [b.tolist() for b in loader]
    assert torch.equal(torch.rand(3), untouched)  # iterating drew nothing from the global RNG
    again = torch.utils.data.DataLoader(list(range(10)), batch_size=4, shuffle=True, generator=loader_generator(1))
    assert [b.tolist() for b in again] == first and sorted(sum(first, [])) == list(range(10))


def test_resumable_sampler_skips_exactly_the_seen_part_of_an_epoch():
    data = list(range(20))
    full = ResumableSampler(data, num_replicas=2, rank=1, seed=3)
    full.set_epoch(4)
    order = list(full)
    resumed = ResumableSampler(data, num_replicas=2, rank=1, seed=3)
    resumed.set_epoch(4)
    resumed.start_at(6)
    assert list(resumed) == order[6:] and len(resumed) == 4
    resumed.set_epoch(5)
    assert len(list(resumed)) == 10


def test_guard_skips_counts_and_stops_after_n_in_a_row():
    guard = NonFiniteGuard(max_consecutive=3)
    assert guard.check(torch.tensor(1.0), torch.tensor(2.0), step=0)
    assert not guard.check(torch.tensor(float("nan")), step=1)
    assert not guard.check(torch.tensor(1.0), torch.tensor(float("inf")), step=2)
    assert guard.check(1.0, 1.0, step=3) and guard.consecutive == 0 and guard.skipped_total == 2
    guard.check(float("nan")), guard.check(float("nan"))
    with pytest.raises(NonFiniteLossError, match="3 consecutive"):
        guard.check(float("nan"), step=9)


def test_preemption_handler_catches_sigterm_and_restores_handler():
    before = signal.getsignal(signal.SIGTERM)
    with PreemptionHandler() as handler:
        assert not handler.stop_requested()
        os.kill(os.getpid(), signal.SIGUSR1)
        assert handler.stop_requested() and handler.received == signal.SIGUSR1
    assert signal.getsignal(signal.SIGTERM) is before


def test_profiler_writes_a_tensorboard_trace(tmp_path):
    model = nn.Linear(8, 8)
    with make_profiler(True, tmp_path, wait=0, warmup=1, active=2) as profiler:
        for _ in range(4):
            model(torch.randn(4, 8)).sum().backward()
            profiler.step()
    assert list(tmp_path.glob("*.pt.trace.json"))
    with make_profiler(False, tmp_path / "off") as profiler:
        profiler.step()
    assert not (tmp_path / "off").exists()
