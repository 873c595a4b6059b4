"""`qphi eval RUN_DIR`: per-level PHi and next-token loss of a trained run (and the codebook
health of a discrete bottleneck) → eval.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from qphi.errors import QPhiError


def add_parser(sub: argparse._SubParsersAction, name: str, summary: str) -> None:
    p = sub.add_parser(
        name,
        help=summary,
        description="Evaluates the run's latest checkpoint on fresh samples of every level and writes "
        "RUN_DIR/eval.json.",
    )
    p.add_argument("run_dir", type=Path)
    p.add_argument("--samples", type=int, help="blocks per level (default: the run's eval.samples_per_level)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.samples is not None and args.samples < 1:
        raise QPhiError(f"--samples must be at least 1, got {args.samples}: pass --samples 1 or more")
    from qphi.io import write_json
    from qphi.reports.tables import health_table, level_table
    from qphi.training import load_run
    from qphi.training.data import build_source

    config, model, step = load_run(args.run_dir, args.device)
    if args.samples is not None:
        config = config.replace(eval=config.eval.replace(samples_per_level=args.samples))
    summary = {
        "step": step,
        "bottleneck": config.phi.bottleneck.name,
        **build_source(config).evaluate(model, args.device),
    }
    write_json(args.run_dir / "eval.json", summary)
    print(level_table(summary["levels"]))
    if summary["codebook_health"]:
        print(health_table(summary["codebook_health"]))
    print(f"wrote {args.run_dir / 'eval.json'}")
    return 0
