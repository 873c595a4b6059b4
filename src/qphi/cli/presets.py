"""`qphi presets`: every preset, what it is for and what it costs."""

from __future__ import annotations

import argparse

from qphi.presets import CATALOG


def add_parser(sub: argparse._SubParsersAction, name: str, summary: str) -> None:
    p = sub.add_parser(
        name,
        help=summary,
        description="Presets are complete training configs: `qphi train PRESET [key=value …]` trains one, "
        "`qphi config show PRESET` prints every key it sets.",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    width = max(map(len, CATALOG))
    for preset in CATALOG.values():
        print(f"{preset.name:<{width}}  {preset.purpose}")
        print(f"{'':<{width}}  cost: {preset.cost}; reproduce/sweep: {'yes' if preset.data == 'pfa' else 'no'}")
    return 0
