"""`qphi nl-levels RUN_DIR --out DIR`: PHi and next-token loss per natural-language level."""

from __future__ import annotations

import argparse
from pathlib import Path

from qphi.cli.numbers import at_least
from qphi.cli.options import config_from_args
from qphi.experiments.nl_levels import NLLevelsConfig
from qphi.experiments.nl_levels import run as run_nl_levels
from qphi.reports.nl_levels import nl_levels_table


def add_parser(sub: argparse._SubParsersAction, name: str, summary: str) -> None:
    p = sub.add_parser(
        name,
        help=summary,
        description="Scores the assistant turn of every text (Trivial, Memorized, Random, Literature, Code), also "
        "with the PHi layer bypassed, and writes nl_levels.json, nl_levels.png and nl_levels_nll.png.",
    )
    p.add_argument("run_dir", type=Path)
    p.add_argument("--data", type=Path, help="folder of {level, user, assistant} JSON files (default: the run's)")
    p.add_argument("--out", type=Path, help="output folder (default: RUN_DIR/nl_levels)")
    p.add_argument("--max-tokens", type=at_least(1), help="scored tokens per text (default: the run's eval_max_tokens)")
    p.add_argument("--all-tokens", action="store_true", help="score whole texts (up to the model's context)")
    p.add_argument("--batch-size", type=at_least(1), default=2)
    p.add_argument("--device", default="cpu")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(NLLevelsConfig, args)
    result = run_nl_levels(config)
    print(nl_levels_table(result.levels))
    print(f"wrote {config.out_dir / 'nl_levels.json'}, {config.out_dir / 'nl_levels.png'}")
    return 0
