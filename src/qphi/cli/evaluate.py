"""`qphi eval RUN_DIR`: per-level PHi and next-token loss of a trained run → eval.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from qphi.evaluation.levels import evaluate_levels
from qphi.io import write_json
from qphi.reports.tables import level_table
from qphi.tasks import CharTokenizer, PFALevels
from qphi.training import load_run


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a trained run on fresh samples of every level")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--samples", type=int, help="blocks per level (default: the run's eval.samples_per_level)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config, model, step = load_run(args.run_dir, args.device)
    eval_config = config.eval if args.samples is None else config.eval.replace(samples_per_level=args.samples)
    evaluation = evaluate_levels(
        model, PFALevels(config.data.pfa), CharTokenizer(), eval_config, config.data.row_length, args.device
    )
    summary = {"step": step, "bottleneck": config.phi.bottleneck, **evaluation.summary()}
    write_json(args.run_dir / "eval.json", summary)
    print(level_table(summary["levels"]))
    print(f"wrote {args.run_dir / 'eval.json'}")
    return 0
