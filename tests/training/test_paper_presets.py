"""The GPU presets run as documented: a couple of steps at their full model shape on the CPU."""

from __future__ import annotations

import pytest

from qphi.cli.main import main

from .runs import newest

pytestmark = pytest.mark.slow

SHORT = ("train.steps=2", "train.batch_size=1", "train.num_workers=0", "train.checkpoint_every=2")
SHORT_EVAL = ("eval.levels=[3]", "eval.samples_per_level=1", "eval.batch_size=1")


@pytest.mark.parametrize(
    ("preset", "bottleneck"),
    [("paper", "continuous"), ("paper", "vq"), ("paper", "residual"), ("paper-lstm", "gumbel")],
)
def test_paper_preset_trains_and_evaluates_at_full_shape(preset, bottleneck, tmp_path):
    run = tmp_path / "run"
    argv = ["train", preset, f"phi.bottleneck={bottleneck}", *SHORT, *SHORT_EVAL, "--out", str(run)]
    assert main(argv) == 0
    assert newest(run).step == 2
    assert (run / "eval.json").is_file()
