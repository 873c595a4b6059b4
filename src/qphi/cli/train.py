"""`qphi train CONFIG [key=value ...]`: train a model with a PHi layer."""

from __future__ import annotations

import argparse
from pathlib import Path

from qphi.presets import PRESETS


def add_parser(sub: argparse._SubParsersAction, name: str, summary: str) -> None:
    p = sub.add_parser(
        name,
        help=summary,
        description=f"Train from a preset ({', '.join(PRESETS)}; `qphi presets` says what each is for) or a YAML "
        "file; override any key with key=value (e.g. phi.bottleneck=vq train.steps=500; `qphi config show PRESET` "
        "prints every key). Run under torchrun for several processes.",
    )
    p.add_argument("config", help="preset name or YAML file")
    p.add_argument("overrides", nargs="*", help="key=value overrides; resume=true continues a killed run")
    p.add_argument("--out", type=Path, help="run directory (default: runs/NAME-BOTTLENECK)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from qphi.training import load_run_config, train
    from qphi.training.run_dir import check_config_source

    overrides = [o for o in args.overrides if o.replace(" ", "").lower() not in ("resume=true", "resume=false")]
    resume = args.resume or any(o.replace(" ", "").lower() == "resume=true" for o in args.overrides)
    config = load_run_config(args.config, overrides)
    out = args.out or Path("runs") / f"{config.name}-{config.phi.bottleneck.name}"
    check_config_source(out, args.config)
    result = train(config, out, resume=resume)
    if result.interrupted:
        if result.is_main:
            print(f"stopped at step {result.step}; continue with: qphi train {args.config} ... --out {out} --resume")
        return 130
    if result.is_main:
        print(f"run directory: {out}")
    return 0
