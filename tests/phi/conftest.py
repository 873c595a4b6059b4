"""The PHi-layer tests use tiny tensors: one intra-op thread is faster than several, and much
faster on a machine whose cores are shared (threads otherwise wait on each other)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
