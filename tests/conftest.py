"""Suite-wide settings: one intra-op thread per pytest-xdist worker (two workers share the two cores)."""
import os

import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
