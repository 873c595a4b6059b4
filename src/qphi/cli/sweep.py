"""`qphi sweep --bottleneck B --sizes K … --out DIR`: the codebook-scaling experiment (SPEC §5.7)."""

from __future__ import annotations

import argparse
from pathlib import Path

from qphi.bottlenecks import registry
from qphi.cli.lists import NumbersThenOverrides, overrides
from qphi.cli.numbers import at_least
from qphi.cli.options import config_from_args
from qphi.cli.runs import add_run_options, print_plan
from qphi.presets import PFA_PRESETS


def add_parser(sub: argparse._SubParsersAction, name: str, summary: str) -> None:
    p = sub.add_parser(
        name,
        help=summary,
        description="Trains (or resumes, or reuses) one run per codebook size K, RQ depth Q and seed under OUT/runs, "
        "evaluates each on fresh samples of every level (PHi, next-token loss, range-coded size of the code stream, "
        "codebook health), and writes sweep.json, sweep.png and sweep.html into OUT. For FSQ a size is the implied "
        "codebook ∏ levels (levels chosen by qphi.bottlenecks.fsq.levels_for). Interrupted? Run the same "
        "command again. --plan and --analyse-only split it for a cluster, as in `qphi reproduce`.",
    )
    p.add_argument("--preset", default="cpu-quick", choices=PFA_PRESETS, help="a preset of the PFA levels")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--bottleneck", required=True, choices=registry.discrete_names())
    p.add_argument(
        "--sizes", nargs="+", required=True, action=NumbersThenOverrides, metavar="K", help="codebook sizes (16 64 …)"
    )
    p.add_argument(
        "--stages", nargs="+", action=NumbersThenOverrides, metavar="Q", help="RQ depths (residual; default: preset's)"
    )
    p.add_argument("--seeds", type=at_least(1), default=1, help="seeds per configuration (default 1)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    add_run_options(p)
    p.add_argument("overrides", nargs="*", help="key=value overrides applied to every run (e.g. train.steps=100)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from qphi.experiments import sweep
    from qphi.reports.sweep import markdown_table

    config = config_from_args(sweep.SweepConfig, args, overrides=overrides(args))
    if args.plan:
        print_plan(config)
        return 0
    result = sweep.run(config)
    print(markdown_table(result))
    print(f"reports in {config.out} ({result.wall_time_s / 60:.1f} min)")
    return 0
