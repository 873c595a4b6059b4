"""How long the command line takes to answer: `qphi --help`, `qphi --version`, `qphi train --help`,
and `import qphi.cli.main`, each in a fresh interpreter (medians of interleaved repetitions),
beside a bare `python -c pass` — the floor any command pays. The target: `qphi --help` under 1 s.

    PYTHONPATH=src python benchmarks/bench_cli.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

CASES = {
    "python -c pass": ["-c", "pass"],
    "import qphi.cli.main": ["-c", "import qphi.cli.main"],
    "qphi --help": ["-m", "qphi.cli.main", "--help"],
    "qphi --version": ["-m", "qphi.cli.main", "--version"],
    "qphi train --help": ["-m", "qphi.cli.main", "train", "--help"],
    "qphi data --help": ["-m", "qphi.cli.main", "data", "--help"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(args.repeats):
        for name, argv in CASES.items():
            start = time.perf_counter()
            subprocess.run([sys.executable, *argv], check=True, capture_output=True)
            times[name].append(time.perf_counter() - start)
    floor = statistics.median(times["python -c pass"])
    print(f"{'command':<22} {'median s':>9} {'min s':>7} {'over python':>12}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<22} {median:>9.3f} {min(values):>7.3f} {median - floor:>12.3f}")
    verdict = "met" if statistics.median(times["qphi --help"]) < 1.0 else "NOT met"
    print(f"target `qphi --help` < 1 s: {verdict}")


if __name__ == "__main__":
    main()
