"""The resume tests' shared comparison finds every kind of difference and names where it is."""
import pytest
import torch

from tests.state_compare import assert_same_state


def state(**changes):
    base = {"model": {"w": torch.ones(2, 3)}, "optimizer": {"state": [torch.zeros(1)], "lr": 0.1},
            "metric": float("nan"), "config": {"out": "a"}}
    return {**base, **changes}


def test_identical_states_pass_and_nan_equals_nan():
    assert_same_state(state(), state())


@pytest.mark.parametrize("changed, where", [
    (state(model={"w": torch.ones(2, 3).double()}), "state.model.w"),            # dtype
    (state(model={"w": torch.ones(3, 2)}), "state.model.w"),                     # shape
    (state(model={"w": torch.ones(2, 3) + 1e-7}), "state.model.w"),              # one ulp-scale change
    (state(optimizer={"state": [torch.zeros(1)], "lr": 0.2}), "state.optimizer.lr"),
    (state(optimizer={"state": [], "lr": 0.1}), "state.optimizer.state"),
    (state(metric=1.0), "state.metric"),
    (state(config={"out": "b"}), "state.config.out"),
])
def test_each_difference_fails_naming_its_path(changed, where):
    with pytest.raises(AssertionError, match=rf"^{where.replace('.', chr(92) + '.')}"):
        assert_same_state(state(), changed)


def test_ignored_top_level_keys_are_left_out():
    assert_same_state(state(), state(config={"out": "b"}), ignore=("config",))
