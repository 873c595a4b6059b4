"""`qphi eval RUN_DIR`: per-level PHi and next-token loss of a trained run (and the codebook
health of a discrete bottleneck) → eval.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from qphi.cli.numbers import at_least


def add_parser(sub: argparse._SubParsersAction, name: str, summary: str) -> None:
    p = sub.add_parser(
        name,
        help=summary,
        description="Evaluates the run's latest checkpoint on fresh samples of every level and writes "
        "RUN_DIR/eval.json.",
    )
    p.add_argument("run_dir", type=Path)
    p.add_argument("--samples", type=at_least(1), help="blocks per level (default: the run's eval.samples_per_level)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from qphi.io import write_json
    from qphi.reports.tables import health_table, level_table
    from qphi.training import load_run
    from qphi.training.data import build_source
    from qphi.training.run_dir import EVAL, RunLock

    with RunLock(args.run_dir, create=False):  # eval.json is the run's: no training may write it meanwhile
        config, model, step = load_run(args.run_dir, args.device)
        if args.samples is not None:
            config = config.replace(eval=config.eval.replace(samples_per_level=args.samples))
        evaluation = build_source(config).evaluate(model, args.device, step)
        write_json(args.run_dir / EVAL, evaluation)
    print(level_table(evaluation.levels))
    if evaluation.codebook_health is not None:
        print(health_table(evaluation.codebook_health))
    print(f"wrote {args.run_dir / EVAL}")
    return 0
