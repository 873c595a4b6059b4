"""`qphi sweep --bottleneck B --sizes K … --out DIR`: the codebook-scaling experiment (SPEC §5.7)."""

from __future__ import annotations

import argparse
from pathlib import Path

from qphi.bottlenecks import registry
from qphi.cli.lists import NumbersThenOverrides, overrides
from qphi.cli.options import config_from_args
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
    p.add_argument("--seeds", type=int, default=1, help="seeds per configuration (default 1)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--jobs", type=int, default=1, help="runs trained and analysed at once, each in its own process")
    p.add_argument("--threads", type=int, default=1, help="threads per process when --jobs is above 1")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--plan",
        action="store_true",
        help="write the training commands (one per line) and SLURM scripts; train nothing",
    )
    mode.add_argument(
        "--analyse-only", action="store_true", help="collect the runs the --plan commands trained; train nothing"
    )
    p.add_argument("overrides", nargs="*", help="key=value overrides applied to every run (e.g. train.steps=100)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from qphi.cli.reproduce import print_plan
    from qphi.experiments import sweep
    from qphi.reports.sweep import markdown_table

    config = config_from_args(sweep.SweepConfig, args, overrides=overrides(args))
    if args.plan:
        print_plan(sweep.plan(config), config.out, config.replace(analyse_only=True).command())
        return 0
    result = sweep.run(config)
    print(markdown_table(result))
    print(f"reports in {config.out} ({result.wall_time_s / 60:.1f} min)")
    return 0
