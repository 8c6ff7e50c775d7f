"""Shared fixtures: a small synthetic Action Genome written once per test session (per xdist worker)."""
import pytest

from vidsgg.synth import write_dataset


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ag_synth")
    write_dataset(root, videos=24, width=96, height=72, seed=3)
    return root


@pytest.fixture(scope="session")
def train_data(tmp_path_factory):
    """30 synthetic videos at 64×48 for the training tests (their feature cache is shared through data/cache)."""
    root = tmp_path_factory.mktemp("ag_train")
    write_dataset(root, videos=30, width=64, height=48, seed=7)
    return root
