"""Train LAQ. Hydra command line, e.g.

    python laq/scripts/2_train_laq.py experiment=laq_debug
    python laq/scripts/2_train_laq.py experiment=laq_normal data=laq_scenes training.optimizer.lr=5e-4
    torchrun --nproc_per_node=8 laq/scripts/2_train_laq.py experiment=laq_normal
    python laq/scripts/2_train_laq.py --cfg job          # print the composed config

Works from the repository root and from laq/ (`python scripts/2_train_laq.py ...`, as the guide types it).
The run folder is `hydra.run.dir` (checkpoints/, tb/, log.txt, metrics.json, config.yaml). See laq/README.md.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, from wherever it is run

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from laq.config_schema import quote_string_overrides  # noqa: E402  (also registers the typed schema)


@hydra.main(version_base="1.3", config_path="../config", config_name="config")
def main(cfg: DictConfig) -> None:
    from laq.train import run  # imported here so --help and --cfg job answer without loading torch

    run(cfg, HydraConfig.get().runtime.output_dir)


if __name__ == "__main__":
    sys.argv[1:] = quote_string_overrides(sys.argv[1:])
    main()
