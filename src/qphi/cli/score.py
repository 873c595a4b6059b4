"""`qphi score --phi RUN_DIR (--text FILE | --jsonl FILE) --out DIR`: PHi and next-token loss per token."""

from __future__ import annotations

import argparse
from pathlib import Path

from qphi.cli.numbers import at_least
from qphi.cli.options import config_from_args
from qphi.experiments.score import ScoreConfig
from qphi.experiments.score import run as run_score


def add_parser(sub: argparse._SubParsersAction, name: str, summary: str) -> None:
    p = sub.add_parser(
        name,
        help=summary,
        description="Writes tokens.jsonl (per token: text, PHi in nats and bits, per stage, next-token loss, and the "
        "base model's next-token loss), summary.json and heatmap.html (a self-contained page: PHi or surprisal per "
        'token, values on hover and in a table, SVG and CSV downloads). A --jsonl line is {"text": ...} (all tokens '
        'scored) or {"user": ..., "assistant": ...} (chat template; assistant scored). Texts longer than the '
        "model's context are refused unless --max-tokens cuts them.",
    )
    p.add_argument(
        "--phi", type=Path, required=True, dest="run_dir", metavar="RUN_DIR", help="training run of the PHi layer"
    )
    p.add_argument("--model", help="base model (default: the run's; must match it)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", type=Path, help="a UTF-8 text file, scored as one text")
    source.add_argument("--jsonl", type=Path, help="one text or chat per line")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--max-tokens", type=at_least(1), help="score only the first N scored tokens of each text")
    p.add_argument("--batch-size", type=at_least(1), default=4)
    p.add_argument("--device", default="cpu")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(ScoreConfig, args)
    overall = run_score(config).overall
    print(
        f"{overall.n_tokens} tokens: mean PHi {overall.phi_mean:.3f} nats ({overall.phi_bits_mean:.3f} bits), "
        f"next-token loss {overall.nll_mean:.3f} nats"
    )
    print(f"wrote {config.out / 'tokens.jsonl'}, {config.out / 'summary.json'}, {config.out / 'heatmap.html'}")
    return 0
