"""`qphi correctness RUN_DIR --dataset {gsm8k,math} --out DIR`: does PHi pick correct reasoning chains?"""

from __future__ import annotations

import argparse
from pathlib import Path

from qphi.cli.numbers import at_least
from qphi.cli.options import config_from_args
from qphi.experiments.correctness import CorrectnessConfig
from qphi.experiments.correctness import run as run_correctness
from qphi.reports.correctness import correctness_table


def add_parser(sub: argparse._SubParsersAction, name: str, summary: str) -> None:
    p = sub.add_parser(
        name,
        help=summary,
        description="Generates --samples-per-question rationales per question with the base model (PHi layer "
        "bypassed, batched, KV cache), checks their answers, scores them with the PHi layer, and writes "
        "correctness.json and correctness.png. generations.jsonl and scores.jsonl in --out are caches: rerunning "
        "resumes an interrupted run and re-analyses without regenerating.",
    )
    p.add_argument("run_dir", type=Path)
    p.add_argument("--dataset", choices=("gsm8k", "math"), required=True)
    p.add_argument("--data", type=Path, help="dataset folder or .jsonl (default: <data>/gsm8k or <data>/math)")
    p.add_argument("--split", choices=("train", "test"), default="test")
    p.add_argument(
        "--questions", type=at_least(1), default=100, help="questions drawn at random (seeded) from the split"
    )
    p.add_argument("--samples-per-question", type=at_least(1), default=8)
    p.add_argument("--max-new-tokens", type=at_least(1), default=512)
    p.add_argument("--temperature", type=float, default=0.6)
    p.add_argument("--top-k", type=at_least(1), default=300)
    p.add_argument("--batch-size", type=at_least(1), default=8, help="sequences decoded together")
    p.add_argument("--seed", type=at_least(0), default=0)
    p.add_argument("--resamples", type=at_least(1), default=1000, help="bootstrap resamples")
    p.add_argument("--out", type=Path, help="output folder (default: RUN_DIR/correctness-DATASET)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(CorrectnessConfig, args)
    result = run_correctness(config)
    print(correctness_table(result.levels))
    print(f"wrote {config.out_dir / 'correctness.json'}")
    return 0
