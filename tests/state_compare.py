"""One comparison for the resume tests of every project: two saved states (nested dicts, lists, tensors and plain
values, as torch.load returns them) are identical in every tensor and every value."""
from __future__ import annotations

import math

import torch


def assert_same_state(a, b, where: str = "state", ignore: tuple[str, ...] = ()) -> None:
    """Every tensor (same dtype, bitwise equal) and every other value of `a` and `b` is the same; NaN equals NaN
    (a metric that was NaN in both runs). `ignore`: top-level keys left out (e.g. the run's config, which holds the
    output folder). The assertion message is the path of the first difference, e.g. `state.optimizer.state.3`."""
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and a.dtype == b.dtype and a.shape == b.shape, f"{where}: dtype or shape differ"
        assert torch.equal(a, b), f"{where}: values differ"
    elif isinstance(a, dict):
        assert isinstance(b, dict), f"{where}: {type(b).__name__} where a dict was expected"
        keys_a, keys_b = set(a) - set(ignore), set(b) - set(ignore)
        assert keys_a == keys_b, f"{where}: keys differ ({sorted(map(str, keys_a ^ keys_b))})"
        for key in a:
            if key not in ignore:
                assert_same_state(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), f"{where}: {a!r} != {b!r}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"
