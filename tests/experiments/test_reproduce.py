"""The reproduction end to end on tiny runs: typed results that read back as written, reports
without a spread for one seed, runs reused when run again, one reproduction per folder, and
parallel runs that give exactly the analyses of runs one after another."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from training.runs import assert_same_tensors, file_digests, tiny_overrides, weights

from qphi.errors import QPhiError
from qphi.evaluation.complexity import ComplexityAnalysis
from qphi.evaluation.results import KeyResults
from qphi.experiments.reproduce import ReproduceConfig, run
from qphi.io import read_json

OVERRIDES = tuple(tiny_overrides("train.steps=2", "train.checkpoint_every=2", "eval.levels=[0,1,3,4]"))


def tiny(out: Path, **options) -> ReproduceConfig:
    return ReproduceConfig(
        **{"out": out, "bottlenecks": ("continuous", "vq"), "overrides": OVERRIDES, "icl_prompts": 2, **options}
    )


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory) -> tuple[Path, KeyResults]:
    out = tmp_path_factory.mktemp("reproduce")
    return out, run(tiny(out))


def test_results_are_typed_and_read_back_as_written(reproduced):
    out, results = reproduced
    assert read_json(out / "key_results.json", KeyResults) == results
    assert set(read_json(out / "complexity.json", dict[str, ComplexityAnalysis])) == {"continuous", "vq"}
    continuous, vq = results.bottlenecks["continuous"], results.bottlenecks["vq"]
    assert continuous.codebook_utilisation is None and continuous.coding is None
    assert len(vq.codebook_utilisation) == 1 and set(vq.coding) == {"mem_seq", "mem_prog", "icll", "random"}
    analysis = json.loads((out / "runs" / "vq-seed0" / "analysis.json").read_text())
    for name, level in vq.levels.items():
        coded = analysis["coding"][name]["coded_bits_per_token"]
        assert level.coded_over_phi_mean == pytest.approx(coded / analysis["levels"][name]["phi_bits_mean"])
        ideal, tokens = analysis["coding"][name]["ideal_bits_per_token"], analysis["coding"][name]["tokens"]
        overhead = (coded - ideal) * tokens / analysis["levels"][name]["n_blocks"]
        assert level.coder_overhead_bits_mean == pytest.approx(overhead)
        assert 0 <= overhead <= 64  # each block's stream costs Σ PHi plus at most two 32-bit words
        assert level.phi_std is None and level.n_seeds == 1  # one seed: no spread, not a spread of 0
    assert continuous.levels["icll"].coded_over_phi_mean is None
    assert set(json.loads((out / "codebook_health.json").read_text())) == {"vq"}


def test_one_seed_shows_no_spread_and_every_figure_has_an_svg(reproduced):
    out, _ = reproduced
    for page in ("report.html", "key_results.md"):
        assert "±" not in re.sub(r"<p[^>]*>.*?</p>", "", (out / page).read_text())  # notes may explain it
    for png in out.glob("*.png"):
        assert png.with_suffix(".svg").read_text().lstrip().startswith(("<?xml", "<svg"))
        assert f'href="{png.stem}.svg"' in (out / "report.html").read_text()
    assert "Per seed: the published directions" in (out / "key_results.md").read_text()


def test_running_it_again_reuses_every_run(reproduced):
    out, results = reproduced
    before = file_digests(out / "runs")
    again = run(tiny(out))
    assert file_digests(out / "runs") == before
    assert again.bottlenecks == results.bottlenecks


def test_a_folder_holds_one_reproduction(reproduced):
    out, _ = reproduced
    with pytest.raises(QPhiError, match="holds a reproduction"):
        run(ReproduceConfig(out=out, bottlenecks=("vq",), overrides=(*OVERRIDES, "train.steps=3")))
    with pytest.raises(QPhiError, match=r"the reproduction sets train\.seed itself"):
        run(ReproduceConfig(out=out / "other", overrides=(*OVERRIDES, "train.seed=3")))
    assert not (out / "other").exists()


def test_parallel_runs_equal_runs_one_after_another(tmp_path):
    """--jobs 2 trains and analyses in two processes of one thread each; the weights and the
    analyses are those of --jobs 1 (this process runs on one thread too, tests/conftest.py)."""
    one, two = tmp_path / "one", tmp_path / "two"
    config = dict(bottlenecks=("gumbel",), seeds=2)
    serial = run(tiny(one, **config))
    parallel = run(tiny(two, jobs=2, **config))
    assert parallel.bottlenecks == serial.bottlenecks
    for seed in (0, 1):
        name = f"runs/gumbel-seed{seed}"
        assert_same_tensors(weights(one / name), weights(two / name))
        assert (one / name / "analysis.json").read_text() == (two / name / "analysis.json").read_text()
        assert "gumbel" in (two / "logs" / f"gumbel-seed{seed}.log").read_text()  # the child's output
