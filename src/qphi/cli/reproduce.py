"""`qphi reproduce --preset P --out DIR`: every bottleneck × seed → key results, plots, report."""

from __future__ import annotations

import argparse
from pathlib import Path

from qphi.bottlenecks import registry
from qphi.presets import PFA_PRESETS


def add_parser(sub: argparse._SubParsersAction, name: str, summary: str) -> None:
    p = sub.add_parser(
        name,
        help=summary,
        description="Trains (or resumes, or reuses) one run per bottleneck and seed under OUT/runs, evaluates them "
        "on fresh samples of every level, and writes key_results.{json,md}, plots, complexity.json, "
        "icl_competence.json and report.html into OUT. Interrupted? Run the same command again.",
    )
    p.add_argument("--preset", default="cpu-quick", choices=PFA_PRESETS, help="a preset of the PFA levels")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seeds", type=int, help="seeds per bottleneck (default: 1 for cpu-quick, 3 otherwise)")
    p.add_argument(
        "--bottlenecks", nargs="+", default=list(registry.names()), metavar="NAME", help=" ".join(registry.names())
    )
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--icl-prompts", type=int, default=64, help="prompts for the in-context-learning competence test")
    p.add_argument("overrides", nargs="*", help="key=value overrides applied to every run (e.g. train.steps=100)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from qphi.experiments.reproduce import reproduce

    reproduce(
        args.preset,
        args.out,
        seeds=args.seeds,
        bottlenecks=tuple(args.bottlenecks),
        device=args.device,
        overrides=tuple(args.overrides),
        icl_prompts=args.icl_prompts,
    )
    return 0
