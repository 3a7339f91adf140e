"""Fixtures for the inference tests: one intra-op thread (these tensors are tiny, and on a busy machine
extra threads only wait for each other), restored afterwards."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
