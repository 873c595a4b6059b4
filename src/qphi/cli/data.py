"""`qphi data fetch [NAME ...] [--to DIR]` and `qphi data check [DIR]`: the real datasets."""

from __future__ import annotations

import argparse
from pathlib import Path

from qphi.errors import QPhiError
from qphi.tasks.data_files import DATA_ENV, DATASETS

FETCH_NAMES = tuple(fetch for fetch, _ in DATASETS.values())


def add_parser(sub: argparse._SubParsersAction, name: str, summary: str) -> None:
    p = sub.add_parser(
        name,
        help=summary,
        description="GSM-8k and MATH come from the Hugging Face hub (openai/gsm8k, EleutherAI/hendrycks_math), the "
        "natural-language levels from the PHi paper's GitHub repository, each at a pinned commit and checked by "
        f"SHA-256. The default folder is ${DATA_ENV}, else the platform's user data folder; every command looks "
        "there unless given a path.",
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    fetch = actions.add_parser(
        "fetch",
        help="download, verify and convert datasets",
        description="Downloads each dataset, verifies it and writes it in the loaders' format into DIR/<dataset>/ "
        "with a SOURCE.json; a copy fetched before is kept.",
    )
    fetch.add_argument("names", nargs="*", choices=(*FETCH_NAMES, "all"), default=["all"], metavar="NAME",
                       help=f"{', '.join(FETCH_NAMES)} or all (default: all)")  # fmt: skip
    fetch.add_argument("--to", type=Path, help=f"data folder (default: ${DATA_ENV}, else the user data folder)")
    fetch.set_defaults(run=run_fetch)
    check = actions.add_parser(
        "check",
        help="check that a data folder holds every dataset, intact",
        description="Loads every dataset of DIR with the loaders the commands use and verifies its files against "
        "their SOURCE.json; exits with status 2 if one is missing or damaged.",
    )
    check.add_argument("folder", nargs="?", type=Path, help="data folder (default: the default data folder)")
    check.set_defaults(run=run_check)


def run_fetch(args: argparse.Namespace) -> int:
    from qphi.tasks.fetch import NAMES, fetch

    names = FETCH_NAMES if "all" in args.names else tuple(dict.fromkeys(args.names))
    for name in names:
        report = fetch(NAMES[name], args.to)
        print(f"{name:<10} {report.path}: {report.detail}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from qphi.tasks.data_files import default_data_dir
    from qphi.tasks.fetch import check

    folder = args.folder.expanduser() if args.folder is not None else default_data_dir()
    reports = [check(folder / dataset, dataset) for dataset in DATASETS]
    for r in reports:
        print(f"{DATASETS[r.dataset][0]:<10} {'ok' if r.ok else 'PROBLEM':<8} {r.detail}")
    bad = [DATASETS[r.dataset][0] for r in reports if not r.ok]
    if bad:
        raise QPhiError(
            f"'{folder}' lacks a usable {', '.join(bad)}: run `qphi data fetch {' '.join(bad)} --to {folder}` "
            "(move a damaged folder away first)"
        )
    return 0
