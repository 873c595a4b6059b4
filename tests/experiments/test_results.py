"""Pooling per-seed analyses and the key-results tables, on hand-made analyses whose answers are
known: mean ± std (none for one seed), the per-seed directions, coded bits ÷ Σ PHi, and the
optional per-level diagnostic."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from analyses import LEVELS, analysis

from qphi.errors import QPhiError
from qphi.evaluation.results import (
    UNITS,
    BottleneckResults,
    KeyResults,
    RunAnalysis,
    directions,
    pool_coding,
    pool_levels,
)
from qphi.reports.key_results import KL_TITLE, markdown_tables


def key_results(runs: list[RunAnalysis]) -> KeyResults:
    return KeyResults("cpu", UNITS, {"gumbel": BottleneckResults(pool_levels(runs), [r.seed for r in runs], 10,
                                                                 directions(runs), coding=pool_coding(runs))})  # fmt: skip


SEEDS = [
    analysis(0, dict(zip(LEVELS, (0.2, 0.3, 0.6, 0.1), strict=True)), {lv: 1.0 for lv in LEVELS}),
    analysis(1, dict(zip(LEVELS, (0.4, 0.3, 0.5, 0.2), strict=True)), {lv: 2.0 for lv in LEVELS}),
    analysis(2, dict(zip(LEVELS, (0.3, 0.9, 0.6, 0.4), strict=True)), {lv: 3.0 for lv in LEVELS}),
]


def test_levels_pool_to_mean_and_sample_std_over_seeds():
    icll = pool_levels(SEEDS)["icll"]
    assert icll.phi_mean == pytest.approx(np.mean([0.6, 0.5, 0.6]))
    assert icll.phi_std == pytest.approx(np.std([0.6, 0.5, 0.6], ddof=1))
    assert icll.nll_std == pytest.approx(1.0)
    assert icll.phi_normalised_mean == pytest.approx(np.mean([0.6 / 0.2, 0.5 / 0.4, 0.6 / 0.3]))
    per_seed = [bits / (phi / math.log(2)) for bits, phi in ((1.0, 0.6), (2.0, 0.5), (3.0, 0.6))]
    assert icll.coded_over_phi_mean == pytest.approx(np.mean(per_seed))
    assert icll.coded_over_phi_std == pytest.approx(np.std(per_seed, ddof=1))
    single = pool_levels(SEEDS[:1])["icll"]
    assert single.phi_std is single.nll_std is single.coded_over_phi_std is None and single.n_seeds == 1


def test_directions_count_the_seeds_that_show_them():
    found = directions(SEEDS)
    assert (found.n_seeds, found.icll_highest, found.random_lowest) == (3, 2, 2)  # seed 2: Mem. Prog. highest
    assert found.icll_over_mem_seq == pytest.approx([3.0, 1.25, 2.0])
    partial = directions([analysis(0, {"mem_seq": 0.2, "icll": 0.3})])
    assert (partial.icll_highest, partial.random_lowest) == (1, None)


def test_the_tables_show_the_directions_and_the_coded_ratio():
    text = markdown_tables(key_results(SEEDS))
    assert "| Gumbel | 2 of 3 | 2 of 3 | 3.00, 1.25, 2.00 |" in text
    coded = text.split("### Range-coded code stream ÷ Σ PHi")[1].split("###")[0]
    icll = pool_levels(SEEDS)["icll"]
    assert f"{icll.coded_over_phi_mean:.3f} ± {icll.coded_over_phi_std:.3f}" in coded
    # 1 % of 1, 2, 3 bits per character over 100 characters in 4 blocks: 0.25, 0.5, 0.75 bits per block
    overhead = text.split("### Range coder's overhead beyond Σ PHi (bits per block)")[1].split("###")[0]
    assert "| Gumbel | 0.500 ± 0.250 | 0.500 ± 0.250 | 0.500 ± 0.250 | 0.500 ± 0.250 |" in overhead
    assert "mean ± std over 3 seed(s)" in text and "KL" not in text


def test_one_seed_shows_means_alone_and_a_diagnostic_when_there_is_one():
    text = markdown_tables(key_results([analysis(0, {"mem_seq": 0.2, "icll": 0.3}, kl=0.75)]))
    assert "±" not in text and "| Gumbel | 0.200 | 0.300 |" in text
    assert f"### {KL_TITLE}" in text and "| Gumbel | 0.750 | 0.750 |" in text
    assert "Range-coded" not in text and "Range coder" not in text  # no code stream measured


def test_a_coded_level_without_blocks_is_refused_in_one_line():
    """A tampered analysis.json (a coded level counting 0 blocks) names the file to delete, no ZeroDivisionError."""
    run = analysis(0, {"mem_seq": 0.2}, {"mem_seq": 1.0})
    run = replace(run, levels={"mem_seq": replace(run.levels["mem_seq"], n_blocks=0)})
    with pytest.raises(QPhiError, match=r"analysis\.json"):
        pool_levels([run])
