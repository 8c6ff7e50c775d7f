"""Suite-wide settings: one intra-op thread per pytest-xdist worker (the workers share the two cores), and the
slow tests first, so that the workers do not end with one long test running while the others sit idle."""
import os

import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


def pytest_collection_modifyitems(items):
    """Modules with more `slow` tests first, and the slow tests first inside each module (longest work first
    balances the workers best). A module stays contiguous, so its module-scoped fixtures are built once per
    worker as before. The order is the same on every worker, as pytest-xdist requires."""
    def module_of(item):
        return item.nodeid.split("::")[0]

    def is_slow(item):
        return item.get_closest_marker("slow") is not None

    slow_per_module, first_seen = {}, {}
    for index, item in enumerate(items):
        module = module_of(item)
        first_seen.setdefault(module, index)
        slow_per_module[module] = slow_per_module.get(module, 0) + is_slow(item)
    order = {id(item): index for index, item in enumerate(items)}
    items.sort(key=lambda item: (-slow_per_module[module_of(item)], first_seen[module_of(item)], not is_slow(item),
                                 order[id(item)]))
