"""Soak test: does resident memory grow over a long training run?

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/soak_memory.py [--steps 3000] [--every 100]
        [--warmup 300] [--out runs/soak-memory] [key=value ...]

Trains the cpu-quick preset in this process (checkpoints, metrics lines and the final
evaluation included, as `qphi train` does) and samples the process's resident memory (VmRSS)
after every `--every` steps. Prints RSS per interval and the growth from the first sample
after `--warmup` steps (allocator pools, data caches and optimizer state are filled by then)
to the last, in total and per 1000 steps. The figures are written to the run directory as
soak.json and soak.csv.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from qphi.io import write_json, write_text
from qphi.training import load_run_config, train
from qphi.training.trainer import Trainer


def rss_mib() -> float:
    """Resident set size of this process in MiB (Linux: /proc/self/status, else psutil)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def record_rss(every: int, samples: list[dict[str, float]]) -> None:
    """Make every training step append (step, seconds, RSS) to `samples` after each `every` steps."""
    original = Trainer._train_step
    start = time.perf_counter()

    def step_and_sample(self: Trainer, index: int, batch) -> dict[str, float]:
        metrics = original(self, index, batch)
        if (index + 1) % every == 0:
            samples.append({"step": index + 1, "seconds": time.perf_counter() - start, "rss_mib": rss_mib()})
        return metrics

    Trainer._train_step = step_and_sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--every", type=int, default=100, help="steps between RSS samples")
    parser.add_argument("--warmup", type=int, default=300, help="growth is measured from the first sample after this")
    parser.add_argument("--out", type=Path, default=Path("runs/soak-memory"))
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the cpu-quick preset")
    args = parser.parse_args()
    if not 0 <= args.warmup < args.steps - args.every:
        parser.error("--warmup must leave at least two samples before --steps")
    config = load_run_config("cpu-quick", [f"train.steps={args.steps}", "train.tensorboard=false", *args.overrides])
    samples: list[dict[str, float]] = [{"step": 0, "seconds": 0.0, "rss_mib": rss_mib()}]
    record_rss(args.every, samples)
    train(config, args.out)
    after_eval = rss_mib()

    measured = [s for s in samples if s["step"] > args.warmup]
    first, last = measured[0], measured[-1]
    growth = last["rss_mib"] - first["rss_mib"]
    per_1000 = growth / (last["step"] - first["step"]) * 1000
    print(f"{'step':>6} {'seconds':>8} {'RSS MiB':>8} {'Δ MiB':>7}")
    for s in samples:
        delta = f"{s['rss_mib'] - first['rss_mib']:+7.1f}" if s["step"] >= first["step"] else ""
        print(f"{s['step']:>6d} {s['seconds']:>8.0f} {s['rss_mib']:>8.1f} {delta:>7}")
    print(
        f"RSS after step {first['step']}: {first['rss_mib']:.1f} MiB; after step {last['step']}: "
        f"{last['rss_mib']:.1f} MiB; growth {growth:+.1f} MiB ({per_1000:+.2f} MiB per 1000 steps, "
        f"{growth / first['rss_mib']:+.2%}); after the final evaluation: {after_eval:.1f} MiB"
    )
    summary = {
        "preset": "cpu-quick",
        "steps": args.steps,
        "every": args.every,
        "warmup": args.warmup,
        "overrides": args.overrides,
        "first_measured": first,
        "last_measured": last,
        "growth_mib": growth,
        "growth_mib_per_1000_steps": per_1000,
        "growth_ratio": growth / first["rss_mib"],
        "rss_after_final_eval_mib": after_eval,
        "samples": samples,
    }
    write_json(args.out / "soak.json", summary)
    rows = "".join(f"{s['step']},{s['seconds']:.3f},{s['rss_mib']:.3f}\n" for s in samples)
    write_text(args.out / "soak.csv", "step,seconds,rss_mib\n" + rows)
    print(f"wrote {args.out / 'soak.json'}, {args.out / 'soak.csv'}")


if __name__ == "__main__":
    main()
