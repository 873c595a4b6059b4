"""`qphi sweep --bottleneck B --sizes K … --out DIR`: the codebook-scaling experiment (SPEC §5.7)."""

from __future__ import annotations

import argparse
from pathlib import Path

from qphi.bottlenecks import registry
from qphi.experiments.sweep import sweep
from qphi.presets import PFA_PRESETS


class _NumbersThenOverrides(argparse.Action):
    """`--sizes 16 64 train.steps=100`: the numbers are the option's values and trailing key=value
    pairs are overrides (a list option would otherwise swallow them)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        numbers = [v for v in values if "=" not in v]
        bad = [v for v in numbers if not v.lstrip("-").isdigit()]
        if bad or not numbers:
            parser.error(f"argument {option_string}: expected integers, got {' '.join(bad) or 'none'}")
        setattr(namespace, self.dest, [int(v) for v in numbers])
        namespace.trailing_overrides = [*getattr(namespace, "trailing_overrides", []), *(v for v in values if "=" in v)]


def add_parser(sub: argparse._SubParsersAction, name: str, summary: str) -> None:
    p = sub.add_parser(
        name,
        help=summary,
        description="Trains (or resumes, or reuses) one run per codebook size K, RQ depth Q and seed under OUT/runs, "
        "evaluates each on fresh samples of every level (PHi, next-token loss, range-coded size of the code stream, "
        "codebook health), and writes sweep.json, sweep.png and sweep.html into OUT. For FSQ a size is the implied "
        "codebook ∏ levels (levels chosen by qphi.bottlenecks.fsq.levels_for). Interrupted? Run the same "
        "command again.",
    )
    p.add_argument("--preset", default="cpu-quick", choices=PFA_PRESETS, help="a preset of the PFA levels")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--bottleneck", required=True, choices=registry.discrete_names())
    p.add_argument(
        "--sizes", nargs="+", required=True, action=_NumbersThenOverrides, metavar="K", help="codebook sizes (16 64 …)"
    )
    p.add_argument(
        "--stages", nargs="+", action=_NumbersThenOverrides, metavar="Q", help="RQ depths (residual; default: preset's)"
    )
    p.add_argument("--seeds", type=int, default=1, help="seeds per configuration (default 1)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("overrides", nargs="*", help="key=value overrides applied to every run (e.g. train.steps=100)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    sweep(
        args.preset,
        args.out,
        args.bottleneck,
        tuple(args.sizes),
        stages=tuple(args.stages) if args.stages else None,
        seeds=args.seeds,
        device=args.device,
        overrides=(*args.overrides, *getattr(args, "trailing_overrides", [])),
    )
    return 0
