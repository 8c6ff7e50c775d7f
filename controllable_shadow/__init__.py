"""The guide's package name: `controllable_shadow.<module>` is `shadow.<module>` of this repository.

The guide (and the sonyya reimplementation it comes from) imports `from controllable_shadow.data import
create_dataloaders`; here that is `shadow.data.create_dataloaders`, so both spellings work.

The guide's dataset check (`python -c "from controllable_shadow.data import create_dataloaders ..."`) uses
`torch.Tensor` without importing torch. So that the snippet runs as printed, importing this package from an
interactive session or `python -c` (a `__main__` without a file) makes `torch` available there, if that session
has not bound the name itself. Scripts and other modules are never touched.
"""
import sys

import torch


def _bind_torch_for_guide_snippets() -> None:
    main = sys.modules.get("__main__")
    if main is not None and not hasattr(main, "__file__") and not hasattr(main, "torch"):
        main.torch = torch


_bind_torch_for_guide_snippets()
