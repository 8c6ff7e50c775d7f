import argparse

import pytest
import torch

from common.cli import str2bool
from common.optim import build_optimizer


@pytest.mark.parametrize("text, value", [("true", True), ("True", True), ("1", True), ("yes", True), ("Y", True),
                                         ("on", True), ("false", False), ("FALSE", False), ("0", False),
                                         ("no", False), ("n", False), ("off", False), (True, True), (False, False)])
def test_str2bool_reads_the_usual_spellings(text, value):
    assert str2bool(text) is value


def test_str2bool_refuses_anything_else_through_argparse(capsys):
    parser = argparse.ArgumentParser()
    parser.add_argument("--flag", type=str2bool, default=False)
    assert parser.parse_args(["--flag", "True"]).flag is True
    with pytest.raises(SystemExit):
        parser.parse_args(["--flag", "maybe"])
    assert "expected true or false, got 'maybe'" in capsys.readouterr().err


def test_build_optimizer_by_name_over_trainable_parameters():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    model[0].requires_grad_(False)
    adamw = build_optimizer(model, "AdamW", lr=1e-3, weight_decay=0.05, betas=(0.9, 0.99))
    assert isinstance(adamw, torch.optim.AdamW)
    assert [p for g in adamw.param_groups for p in g["params"]] == list(model[1].parameters())
    assert adamw.param_groups[0]["betas"] == (0.9, 0.99) and adamw.param_groups[0]["weight_decay"] == 0.05
    adam = build_optimizer(model.parameters(), "adam", lr=2e-4)
    assert type(adam) is torch.optim.Adam and len(adam.param_groups[0]["params"]) == 4
    sgd = build_optimizer(model, "sgd", lr=0.1, betas=(0.8, 0.999))
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == 0.8
    with pytest.raises(ValueError, match=r"training.optimizer.name='lion'.*adam, adamw, sgd"):
        build_optimizer(model, "lion", lr=1e-3, option="training.optimizer.name")


def test_one_accumulation_rule_step_runs_carry_windows_epoch_runs_close_them():
    from common.optim import closes_accumulation_window
    # step-measured run, 3 micro-batches per step, epochs of 4 batches: steps after micro-batches 3, 6, 9, 12
    assert [m for m in range(1, 13) if closes_accumulation_window(m, 3)] == [3, 6, 9, 12]
    # epoch-measured run (counted per epoch): epochs of 4 batches close after batches 3 and 4
    assert [m for m in range(1, 5) if closes_accumulation_window(m, 3, epoch_ends=m == 4)] == [3, 4]
    assert all(closes_accumulation_window(m, 1) for m in range(1, 5))
