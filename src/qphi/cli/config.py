"""`qphi config show CONFIG [key=value ...]`: the resolved config a training run would use."""

from __future__ import annotations

import argparse

from qphi.presets import PRESETS


def add_parser(sub: argparse._SubParsersAction, name: str, summary: str) -> None:
    p = sub.add_parser(name, help=summary, description=summary)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser(
        "show",
        help="print the resolved config as YAML",
        description="Prints, as YAML, the config `qphi train CONFIG [key=value …]` would train with: the preset "
        "or file, its per-bottleneck defaults and the overrides, every key with its value. The output is a "
        "config file itself (qphi train FILE).",
    )
    show.add_argument("config", help=f"preset ({', '.join(PRESETS)}) or YAML file")
    show.add_argument("overrides", nargs="*", help="key=value overrides (e.g. phi.bottleneck=vq)")
    show.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import yaml

    from qphi.training import load_run_config

    config = load_run_config(args.config, args.overrides)
    print(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), end="")
    return 0
