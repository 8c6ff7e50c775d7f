"""The guide's forward/backward check, under the name the guide uses (`python test_dtype_fixes.py` from shadow/).

It is shadow/scripts/check_model.py with the same flags (e.g. `--backbone sdxl --pretrained_path DIR`): fp32 and
autocast forward passes, one-step sampling, and a non-zero gradient for every trainable parameter.
"""
import sys

from shadow.scripts.check_model import main

if __name__ == "__main__":
    sys.exit(main())
