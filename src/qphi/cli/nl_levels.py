"""`qphi nl-levels RUN_DIR --out DIR`: PHi and next-token loss per natural-language level."""

from __future__ import annotations

import argparse
from pathlib import Path

from qphi.cli.llm_run import load_llm_run
from qphi.cli.numbers import at_least
from qphi.evaluation.nl_levels import evaluate_nl_levels, write_nl_report
from qphi.tasks.natural_language import load_nl_levels
from qphi.training.run_dir import saved_config

_UNSET = object()


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
    p.add_argument(
        "--max-tokens",
        type=at_least(1),
        default=_UNSET,
        help="scored tokens per text (default: the run's eval_max_tokens)",
    )
    p.add_argument("--all-tokens", action="store_true", help="score whole texts (up to the model's context)")
    p.add_argument("--batch-size", type=at_least(1), default=2)
    p.add_argument("--device", default="cpu")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    mix = saved_config(args.run_dir).data.mixture
    records = load_nl_levels(args.data if args.data is not None else mix.nl_levels_path)  # before the slow model load
    config, model, tokenizer, step = load_llm_run(args.run_dir, device=args.device)
    max_tokens = None if args.all_tokens else (mix.eval_max_tokens if args.max_tokens is _UNSET else args.max_tokens)
    summary = evaluate_nl_levels(model, tokenizer, records, max_tokens, args.batch_size, progress=True)
    summary = {"run": str(args.run_dir), "step": step, "model": config.model.pretrained, **summary}
    out = args.out or args.run_dir / "nl_levels"
    title = f"{config.model.pretrained}, PHi after block {config.model.phi_after} ({config.phi.bottleneck.name})"
    write_nl_report(summary, out, title=title)
    print(f"{'level':<12} {'PHi nats':>10} {'PHi/dim':>8} {'NLL':>7} {'base NLL':>9} {'tokens':>7}")
    for name, v in summary["levels"].items():
        print(
            f"{name:<12} {v['phi_mean']:>10.2f} {v['phi_per_dim_mean']:>8.4f} {v['nll_mean']:>7.3f} "
            f"{v['base_nll_mean']:>9.3f} {v['n_tokens']:>7d}"
        )
    print(f"wrote {out / 'nl_levels.json'}, {out / 'nl_levels.png'}")
    return 0
