"""The key-results table: mean ± std over seeds of each run's per-level means (SPEC §5.1)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from qphi.bottlenecks import registry
from qphi.tasks import LEVEL_KEYS

LEVEL_ORDER = [LEVEL_KEYS[i] for i in sorted(LEVEL_KEYS)]
TABLE_LEVELS = ("mem_seq", "mem_prog", "icll", "random")  # the thesis's columns
LEVEL_TITLES = {
    "mem_seq": "Mem. Seq.",
    "mem_prog": "Mem. Prog.",
    "fixed_structure": "Fixed Struct.",
    "icll": "ICLL",
    "random": "Random",
    "copy": "Copy",
}


def _mean_std(values: list[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else 0.0


def key_results(preset: str, summaries: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """summaries: bottleneck → one analysis summary per seed (see experiments.analysis)."""
    bottlenecks = {}
    for name, runs in summaries.items():
        levels = {}
        present = [key for key in LEVEL_ORDER if all(key in r["levels"] for r in runs)]
        for key in present:
            phi = [r["levels"][key]["phi_mean"] for r in runs]
            nll = [r["levels"][key]["nll_mean"] for r in runs]
            entry = dict(zip(("phi_mean", "phi_std"), _mean_std(phi), strict=True))
            entry.update(zip(("nll_mean", "nll_std"), _mean_std(nll), strict=True))
            entry["phi_bits_mean"] = entry["phi_mean"] / math.log(2)
            entry["n_seeds"] = len(runs)
            if "mem_seq" in present:
                ratios = [r["levels"][key]["phi_mean"] / r["levels"]["mem_seq"]["phi_mean"] for r in runs]
                entry.update(zip(("phi_normalised_mean", "phi_normalised_std"), _mean_std(ratios), strict=True))
            levels[key] = entry
        bottlenecks[name] = {"levels": levels, "seeds": [r["seed"] for r in runs], "steps": runs[0]["step"]}
    return {"preset": preset, "units": "nats/token", "bottlenecks": bottlenecks}


def _cell(mean: float, std: float, n: int) -> str:
    return f"{mean:.3f} ± {std:.3f}" if n > 1 else f"{mean:.3f}"


def markdown_tables(results: dict[str, Any]) -> str:
    """The thesis's layout: rows = bottlenecks, columns = levels, raw PHi and normalised to Mem. Seq."""
    out = []
    for title, field in (
        ("PHi (nats/token)", "phi"),
        ("PHi normalised to Mem. Seq.", "phi_normalised"),
        ("Next-token loss (nats/token)", "nll"),
    ):
        columns = [c for c in TABLE_LEVELS if any(c in b["levels"] for b in results["bottlenecks"].values())]
        out.append(f"### {title}\n")
        out.append("| Bottleneck | " + " | ".join(LEVEL_TITLES[c] for c in columns) + " |")
        out.append("|---|" + "---:|" * len(columns))
        for name, b in results["bottlenecks"].items():
            cells = []
            for c in columns:
                e = b["levels"].get(c)
                cells.append(
                    _cell(e[f"{field}_mean"], e[f"{field}_std"], e["n_seeds"]) if e and f"{field}_mean" in e else "–"
                )
            out.append(f"| {registry.title(name)} | " + " | ".join(cells) + " |")
        out.append("")
    seeds = {b["levels"][next(iter(b["levels"]))]["n_seeds"] for b in results["bottlenecks"].values()}
    out.append(
        f"Preset `{results['preset']}`; mean ± std over {'/'.join(map(str, sorted(seeds)))} seed(s) of per-seed means."
    )
    return "\n".join(out) + "\n"
