"""The reproduction after its run helpers moved to experiments.runs: it trains, reports and, run
again, reuses every run; a folder holds one reproduction."""

from __future__ import annotations

import pytest
from training.runs import file_digests, tiny_overrides

from qphi.errors import QPhiError
from qphi.experiments.reproduce import reproduce

OVERRIDES = tuple(tiny_overrides("train.steps=2", "train.checkpoint_every=2", "eval.levels=[0,3]"))


def test_reproduce_reports_and_reuses_its_runs(tmp_path):
    results = reproduce("cpu-quick", tmp_path, bottlenecks=("continuous", "vq"), overrides=OVERRIDES, icl_prompts=2)
    assert set(results["bottlenecks"]) == {"continuous", "vq"}
    assert results["bottlenecks"]["continuous"]["codebook_utilisation"] is None
    assert len(results["bottlenecks"]["vq"]["codebook_utilisation"]) == 1
    assert set(results["bottlenecks"]["vq"]["coding"]) == {"mem_seq", "icll"}
    assert (tmp_path / "report.html").is_file()
    before = file_digests(tmp_path / "runs")
    reproduce("cpu-quick", tmp_path, bottlenecks=("continuous", "vq"), overrides=OVERRIDES, icl_prompts=2)
    assert file_digests(tmp_path / "runs") == before
    with pytest.raises(QPhiError, match="holds a reproduction"):
        reproduce("cpu-quick", tmp_path, bottlenecks=("vq",), overrides=(*OVERRIDES, "train.seed=3"))
