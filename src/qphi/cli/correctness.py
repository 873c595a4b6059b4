"""`qphi correctness RUN_DIR --dataset {gsm8k,math} --out DIR`: does PHi pick correct reasoning chains?"""

from __future__ import annotations

import argparse
import math
import random
from dataclasses import asdict
from pathlib import Path

from qphi.cli.llm_run import load_llm_run
from qphi.cli.numbers import at_least
from qphi.errors import QPhiError
from qphi.evaluation.correctness import GenerationSettings, analyse, generate, score, write_report
from qphi.tasks.reasoning import load_gsm8k, load_math


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
    if args.samples_per_question < 2:
        raise QPhiError("--samples-per-question must be at least 2 to compare rationales of a question: pass 2 or more")
    if not 0 < args.temperature < math.inf:
        raise QPhiError(
            f"--temperature must be a positive number, got {args.temperature}: pass a temperature above 0 (e.g. 0.6)"
        )
    loader = load_gsm8k if args.dataset == "gsm8k" else load_math
    problems = [p for p in loader(args.data, args.split) if p.answer is not None]
    problems = random.Random(args.seed).sample(problems, min(args.questions, len(problems)))
    config, model, tokenizer, step = load_llm_run(args.run_dir, device=args.device)
    settings = GenerationSettings(
        samples=args.samples_per_question,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        seed=args.seed,
    )
    out = args.out or args.run_dir / f"correctness-{args.dataset}"
    generations = generate(model, tokenizer, problems, settings, out / "generations.jsonl", args.batch_size)
    scored = score(model, tokenizer, problems, generations, out / "scores.jsonl")
    analysis = analyse(scored, resamples=args.resamples, seed=args.seed)
    meta = {
        "run": str(args.run_dir),
        "step": step,
        "model": config.model.pretrained,
        "phi_after": config.model.phi_after,
        "dataset": args.dataset,
        "split": args.split,
        "questions": len(problems),
        "settings": asdict(settings),
    }
    title = f"{args.dataset}: PHi after block {config.model.phi_after}"
    write_report(out, analysis, meta, title=title)
    print(
        f"{'level':<6} {'questions':>9} {'mixed':>6} {'accuracy':>9} {'flexible':>9} {'highest PHi':>12} {'lowest NLL':>11} {'random':>7} {'partial r':>10}"
    )
    for name, v in analysis["levels"].items():
        cells = [
            f"{v[k]['value']:.3f}" if k in v else "-"
            for k in ("highest_phi", "lowest_nll", "random", "partial_correlation")
        ]
        print(
            f"{name:<6} {v['n_questions']:>9d} {v['n_mixed']:>6d} {v['accuracy']:>9.3f} {v.get('accuracy_flexible', math.nan):>9.3f} {cells[0]:>12} {cells[1]:>11} "
            f"{cells[2]:>7} {cells[3]:>10}"
        )
    print(f"wrote {out / 'correctness.json'}")
    return 0
