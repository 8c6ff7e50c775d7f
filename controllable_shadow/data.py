"""`controllable_shadow.data` as the guide imports it: the datasets and loaders of `shadow.data`."""
from shadow.data import (BenchmarkTarDataset, DatasetError, ShadowFolderDataset, build_datasets,  # noqa: F401
                         create_dataloaders)

__all__ = ["BenchmarkTarDataset", "DatasetError", "ShadowFolderDataset", "build_datasets", "create_dataloaders"]
