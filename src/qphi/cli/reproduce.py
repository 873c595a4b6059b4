"""`qphi reproduce --preset P --out DIR`: every bottleneck × seed → key results, plots, report."""

from __future__ import annotations

import argparse
from pathlib import Path

from qphi.bottlenecks import registry
from qphi.cli.lists import ValuesThenOverrides, overrides
from qphi.cli.numbers import at_least
from qphi.cli.options import config_from_args
from qphi.cli.runs import add_run_options, print_plan
from qphi.presets import PFA_PRESETS


def add_parser(sub: argparse._SubParsersAction, name: str, summary: str) -> None:
    p = sub.add_parser(
        name,
        help=summary,
        description="Trains (or resumes, or reuses) one run per bottleneck and seed under OUT/runs, evaluates them "
        "on fresh samples of every level, and writes key_results.{json,md}, plots, complexity.json, "
        "icl_competence.json and report.html into OUT. Interrupted? Run the same command again. On a cluster: "
        "--plan writes the training commands (OUT/plan.txt) and a SLURM job array over them; once they have run, "
        "the same command with --analyse-only writes the reports.",
    )
    p.add_argument("--preset", default="cpu-quick", choices=PFA_PRESETS, help="a preset of the PFA levels")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seeds", type=at_least(1), help="seeds per bottleneck (default: 1 for cpu-quick, 3 otherwise)")
    p.add_argument(
        "--bottlenecks",
        nargs="+",
        action=ValuesThenOverrides,
        default=list(registry.names()),
        metavar="NAME",
        help=" ".join(registry.names()),
    )
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument(
        "--icl-prompts", type=at_least(0), default=64, help="prompts for the in-context-learning competence test"
    )
    add_run_options(p)
    p.add_argument("overrides", nargs="*", help="key=value overrides applied to every run (e.g. train.steps=100)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from qphi.experiments import reproduce
    from qphi.reports.key_results import markdown_tables

    config = config_from_args(
        reproduce.ReproduceConfig, args, bottlenecks=tuple(args.bottlenecks), overrides=overrides(args)
    )
    if args.plan:
        print_plan(config)
        return 0
    results = reproduce.run(config)
    print(markdown_tables(results))
    print(f"reports in {config.out} ({results.wall_time_s / 60:.1f} min)")
    return 0
