"""Training flushes subnormal floats (slow on x86 CPUs) and leaves PyTorch's default behind."""

from __future__ import annotations

import torch

from qphi.training.trainer import flushing_denormals


def test_training_flushes_subnormal_floats_and_restores_the_default():
    tiny = torch.tensor([1e-40], dtype=torch.float32)  # subnormal in float32
    assert (tiny * 2).item() > 0
    with flushing_denormals():
        assert (tiny * 2).item() == 0.0
    assert (tiny * 2).item() > 0
