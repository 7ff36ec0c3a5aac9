"""Shared by the metric tests."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensors: one thread avoids OpenMP stalls when other processes share the 2 cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
