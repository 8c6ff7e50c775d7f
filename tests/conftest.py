"""Suite-wide settings: one intra-op thread per pytest-xdist worker (the workers share the two cores), and the
slow tests first, so that the workers do not end with one long test running while the others sit idle."""
import os
from collections import Counter

import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


def pytest_collection_modifyitems(items):
    """Modules with more `slow` tests first, and the slow tests first inside each module (longest work first
    balances the workers best). A module stays contiguous, so its module-scoped fixtures are built once per
    worker as before; the sort is stable, so the order is the same on every worker, as pytest-xdist requires."""
    def module_of(item):
        return item.nodeid.split("::")[0]

    def is_slow(item):
        return item.get_closest_marker("slow") is not None

    slow_per_module = Counter(module_of(item) for item in items if is_slow(item))
    first_seen = {}
    for index, item in enumerate(items):
        first_seen.setdefault(module_of(item), index)
    items.sort(key=lambda item: (-slow_per_module[module_of(item)], first_seen[module_of(item)], not is_slow(item)))
