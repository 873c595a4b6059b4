"""train.compile=true: the compiled model trains like the eager one and compiles once, not once
per step — the temperature, the rate warm-up, the entropy anneal and the self-critic fade change every step, and the VQ library's codebook
upkeep branches on data (traced, it recompiled every step on the `cpu` preset and broke
inductor at the `paper` shape)."""

from __future__ import annotations

import shutil

import pytest
import torch
import torch._dynamo.utils
import torch._inductor.config

from qphi.bottlenecks import registry
from qphi.training import train

from .runs import metric_records, tiny_config

FAST = ("vq",)  # the library-backed stage; the others take ~30 s each
REVIVAL = "phi.vq.dead_code_threshold=2"  # dead-code revival on, as in the paper presets (cpu-quick has it off)


def compiled_graphs(run_dir, steps: int, bottleneck: str) -> int:
    """Graphs compiled by a `steps`-step compiled run."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    config = tiny_config(f"phi.bottleneck={bottleneck}", REVIVAL, "train.compile=true", f"train.steps={steps}")
    train(config, run_dir, evaluate=False)
    return torch._dynamo.utils.counters["stats"]["unique_graphs"]


@pytest.mark.skipif(
    not any(map(shutil.which, ("g++", "clang++", "c++"))), reason="torch.compile on a CPU needs a C++ compiler"
)
@pytest.mark.parametrize(
    "bottleneck", [b if b in FAST else pytest.param(b, marks=pytest.mark.slow) for b in registry.names()]
)
@torch._inductor.config.patch(fallback_random=True)  # eager's random streams, so both runs sample alike
def test_compiled_training_matches_eager_and_compiles_once(tmp_path, bottleneck):
    eager = tmp_path / "eager"
    train(tiny_config(f"phi.bottleneck={bottleneck}", REVIVAL, "train.steps=3"), eager, evaluate=False)
    # 10 steps pass every combination of the schedules' branches (rate warm-up 0 / partial / full,
    # self-critic on / faded), each compiled once; twice the steps must add no graph
    short = compiled_graphs(tmp_path / "compiled-10", 10, bottleneck)
    long = compiled_graphs(tmp_path / "compiled-20", 20, bottleneck)
    assert short > 0
    assert long == short, f"{long - short} more graphs over 10 more steps: the model recompiles as it trains"
    first_eager, first_compiled = metric_records(eager)[0], metric_records(tmp_path / "compiled-10")[0]
    for key in ("loss", "nll", "phi"):
        assert first_compiled[key] == pytest.approx(first_eager[key], rel=1e-4), key
