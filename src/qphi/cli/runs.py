"""What the commands that train many runs (reproduce, sweep) share: how the runs are trained —
in parallel processes, or as planned commands for a scheduler — and how a plan is shown."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import TYPE_CHECKING

from qphi.cli.numbers import at_least

if TYPE_CHECKING:
    from qphi.experiments.runs import ExperimentConfig


def add_run_options(p: argparse.ArgumentParser) -> None:
    """--jobs, --threads, and --plan or --analyse-only: shared by reproduce and sweep."""
    p.add_argument(
        "--jobs", type=at_least(1), default=1, help="runs trained and analysed at once, each in its own process"
    )
    p.add_argument("--threads", type=at_least(1), default=1, help="threads per process when --jobs is above 1")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--plan",
        action="store_true",
        help="write the training commands (one per line) and SLURM scripts; train nothing",
    )
    mode.add_argument(
        "--analyse-only", action="store_true", help="collect the runs the --plan commands trained; train nothing"
    )


def print_plan(config: ExperimentConfig) -> None:
    """Write the experiment's plan; the commands alone on stdout (for xargs or GNU parallel),
    where they and the SLURM scripts are on stderr."""
    from qphi.experiments.runs import ANALYSE_SCRIPT, ARRAY_SCRIPT, PLAN, plan

    runs = plan(config)
    print("\n".join(r.command() for r in runs))
    out = config.out.resolve()
    print(
        f"{len(runs)} commands in {out / PLAN}; a SLURM job array over them: {out / ARRAY_SCRIPT}; once they have "
        f"all finished, collect the runs with {out / ANALYSE_SCRIPT}, or:\n"
        f"  {shlex.join(config.replace(analyse_only=True).command())}",
        file=sys.stderr,
    )
