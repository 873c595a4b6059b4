"""The codebook sweep: configurations and FSQ level lists, a tiny sweep end to end, resuming
and reusing runs, and the command line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from training.runs import file_digests, tiny_overrides

from qphi.bottlenecks.fsq import levels_for as fsq_levels_for
from qphi.cli.main import build_parser, main
from qphi.errors import QPhiError
from qphi.evaluation.results import SweepResult
from qphi.experiments.sweep import SweepConfig, SweepPoint, run, sweep_points
from qphi.io import read_json
from qphi.training import load_run_config, train
from qphi.training.run_dir import latest_step, saved_config

OVERRIDES = tuple(tiny_overrides("train.steps=4", "train.checkpoint_every=2", "eval.levels=[0,3]"))
SIZES = (4, 16)


@pytest.mark.parametrize(
    ("size", "levels"), [(2, [2]), (8, [8]), (16, [4, 4]), (64, [8, 8]), (256, [7, 6, 6]), (4096, [8, 8, 8, 8])]
)
def test_fsq_levels_follow_the_documented_rule(size, levels):
    assert fsq_levels_for(size) == levels


@pytest.mark.parametrize("size", [2**e for e in range(1, 17)] + [3, 100, 1000, 5000])
def test_fsq_levels_imply_a_codebook_near_the_size(size):
    levels = fsq_levels_for(size)
    assert len(levels) == max(1, math.ceil(math.log(size, 8) - 1e-9))
    assert min(levels) >= 2 and max(levels) <= 8 and max(levels) - min(levels) <= 1
    assert abs(math.log(math.prod(levels) / size)) <= math.log(1.2)


def sized(point: SweepPoint):
    """The point's bottleneck config, built from the `qphi train` overrides the sweep writes for it."""
    return load_run_config("cpu-quick", [f"phi.bottleneck={point.bottleneck}", *point.overrides("cpu-quick", ())])


def test_every_point_configures_its_codebook():
    points = sweep_points("residual", (64, 16), (2, 1))
    assert [p.label for p in points] == ["residual-K16-Q1", "residual-K64-Q1", "residual-K16-Q2", "residual-K64-Q2"]
    for point in points:
        assert sized(point).phi.stage_sizes == (point.size,) * point.stages
        base = load_run_config("cpu-quick", bottleneck="residual").phi.bottleneck
        assert sized(point).phi.bottleneck == base.sized(point.size, point.stages)
    fsq = sized(SweepPoint("fsq", 1024)).phi.bottleneck
    assert fsq.fsq_levels == [6, 6, 6, 5] and fsq.sweep_size == 1080


@pytest.mark.parametrize(
    ("bottleneck", "sizes", "stages", "message"),
    [
        ("continuous", (16,), (1,), "discrete bottleneck"),
        ("gumbel", (16, 16), (1,), "distinct"),
        ("gumbel", (1,), (1,), ">= 2"),
        ("gumbel", (16,), (2,), "residual"),
        ("residual", (16,), (0,), "depths"),
    ],
)
def test_bad_configurations_are_refused(bottleneck, sizes, stages, message):
    with pytest.raises(QPhiError, match=message):
        sweep_points(bottleneck, sizes, stages)


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> tuple[Path, dict]:
    """A tiny gumbel sweep over two sizes; the first run was stopped halfway and is resumed."""
    out = tmp_path_factory.mktemp("sweep")
    first = out / "runs" / f"gumbel-K{SIZES[0]}-seed0"
    partial = [
        "phi.bottleneck=gumbel",
        "train.seed=0",
        "train.device=auto",
        *OVERRIDES,
        f"phi.codebook_size={SIZES[0]}",
    ]
    train(load_run_config("cpu-quick", [*partial, "train.steps=2"]), first, evaluate=False)
    assert latest_step(first) == 2
    return out, run(SweepConfig(out=out, bottleneck="gumbel", sizes=SIZES, overrides=OVERRIDES))


def test_a_sweep_trains_every_size_and_reports_each(swept):
    out, result = swept
    assert read_json(out / "sweep.json", SweepResult) == result
    assert (out / "sweep.png").stat().st_size > 0 and "codebook scaling" in (out / "sweep.html").read_text()
    assert (out / "sweep.svg").is_file() and "±" not in (out / "sweep.html").read_text()  # one seed: no spread
    assert [c.label for c in result.configurations] == [f"gumbel-K{k}" for k in SIZES]
    for config, size in zip(result.configurations, SIZES, strict=True):
        run_dir = out / "runs" / f"gumbel-K{size}-seed0"
        assert (
            latest_step(run_dir) == 4 and saved_config(run_dir).phi.bottleneck.codebook_size == size
        )  # the stopped run resumed
        analysis = json.loads((run_dir / "analysis.json").read_text())
        assert config.codebook_size == size and config.stage_sizes == [size]
        assert config.options.codebook_size == size
        assert config.capacity_bits == pytest.approx(math.log2(size))
        assert set(config.levels) == {"mem_seq", "icll"}
        for name, level in config.levels.items():
            assert level.phi_mean == analysis["levels"][name]["phi_mean"]
            assert level.nll_mean == analysis["levels"][name]["nll_mean"]
            assert level.coded_bits_per_token == analysis["coding"][name]["coded_bits_per_token"]
        (stage,) = config.codebook_health
        counts = analysis["codebook_health"]["stages"][0]["counts"]
        assert len(counts) == size and stage.utilisation == sum(c > 0 for c in counts) / size
        assert analysis["icl_competence"] is None


def test_running_the_sweep_again_reuses_every_run(swept):
    out, result = swept
    before = file_digests(out / "runs")
    again = run(SweepConfig(out=out, bottleneck="gumbel", sizes=SIZES, overrides=OVERRIDES))
    assert file_digests(out / "runs") == before
    assert again.configurations == result.configurations


def test_a_folder_holds_one_sweep(swept):
    out, _ = swept
    with pytest.raises(QPhiError, match="holds a sweep"):
        run(SweepConfig(out=out, bottleneck="vq", sizes=SIZES, overrides=OVERRIDES))
    with pytest.raises(QPhiError, match=r"sets phi\.codebook_size"):
        run(SweepConfig(out=out, bottleneck="gumbel", sizes=SIZES, overrides=(*OVERRIDES, "phi.codebook_size=8")))


def test_the_command_line_takes_overrides_after_the_sizes(tmp_path, capsys):
    argv = ["sweep", "--out", "x", "--bottleneck", "residual", "--sizes", "16", "64", "--stages", "1", "2"]
    args = build_parser(argv).parse_args([*argv, "train.steps=5"])
    assert (args.sizes, args.stages, args.trailing_overrides) == ([16, 64], [1, 2], ["train.steps=5"])
    assert main(["sweep", "--out", str(tmp_path), "--bottleneck", "gumbel", "--sizes", "16", "--stages", "2"]) == 2
    assert "--stages sets the depth of the residual bottleneck" in capsys.readouterr().err
