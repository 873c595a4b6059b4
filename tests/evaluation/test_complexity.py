"""PHi against automaton complexity pooled over seeds: the model is controlled for and the interval
resamples automata, checked on synthetic evaluations whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from qphi.evaluation.complexity import complexity_analysis
from qphi.evaluation.pfa_levels import BlockRecord, LevelEvaluation, TokenRecords
from qphi.evaluation.stats import partial_correlation

ICLL = 3


def evaluation(phi: np.ndarray, nll: np.ndarray, dl: np.ndarray, tokens_per_block: int = 2) -> LevelEvaluation:
    """One model's evaluation of len(dl) ICLL blocks (block b is sample b); every token of a
    block has the block's PHi and loss."""
    blocks = [
        BlockRecord(level=ICLL, sample=b, num_states=4, num_edges=8, vocab_size=5, description_length=float(dl[b]),
                    truncated=False, phi_mean=float(phi[b]), nll_mean=float(nll[b]), n_tokens=tokens_per_block)
        for b in range(len(dl))
    ]  # fmt: skip
    block = np.repeat(np.arange(len(dl)), tokens_per_block)
    tokens = TokenRecords(
        level=np.full(block.size, ICLL),
        block=block,
        phi=phi[block],
        nll=nll[block],
        phi_per_stage=phi[block][None],
        kl=None,
        codes=None,
    )
    return LevelEvaluation(tokens, blocks)


def test_a_model_effect_does_not_pass_for_an_effect_of_complexity():
    """Within each model PHi is noise and the loss grows with complexity; the models differ in
    their levels of PHi and loss. Pooled without the model, regressing on the loss turns the
    models' differences into a correlation with complexity; with the model controlled it is gone."""
    rng = np.random.default_rng(0)
    automata = 80
    dl = rng.uniform(20, 60, automata)
    evaluations, rows = [], []
    for phi_level, nll_level in ((1.0, 3.0), (3.0, 1.0), (2.0, 2.0)):
        phi = phi_level + 0.05 * rng.standard_normal(automata)
        nll = nll_level + 0.02 * dl + 0.05 * rng.standard_normal(automata)
        evaluations.append(evaluation(phi, nll, dl))
        rows.append((phi, nll))
    phi, nll = (np.concatenate(parts) for parts in zip(*rows, strict=True))
    assert abs(partial_correlation(phi, np.tile(dl, 3), nll)) > 0.5  # the confound, uncontrolled
    result = complexity_analysis(evaluations, resamples=200)
    assert (result.n_blocks, result.n_automata, result.n_models) == (240, 80, 3)
    assert abs(result.partial_controlling_nll.value) < 0.15
    assert result.partial_controlling_nll.low < 0 < result.partial_controlling_nll.high
    assert abs(result.token_partial_controlling_nll) < 0.15


def test_more_models_of_the_same_automata_add_no_information():
    """Three identical copies of one model's evaluation are three rows per automaton but no more
    evidence: resampling automata gives exactly the interval of the one model."""
    rng = np.random.default_rng(1)
    dl = rng.uniform(20, 60, 40)
    nll = 2 + 0.01 * dl + 0.1 * rng.standard_normal(40)
    phi = 0.5 + 0.005 * dl + 0.1 * rng.standard_normal(40)
    one = complexity_analysis([evaluation(phi, nll, dl)], resamples=300).partial_controlling_nll
    three = complexity_analysis([evaluation(phi, nll, dl)] * 3, resamples=300).partial_controlling_nll
    assert (three.n, three.clusters, one.clusters) == (120, 40, 40)
    assert three.value == pytest.approx(one.value)
    assert (three.low, three.high) == pytest.approx((one.low, one.high))


def test_evaluations_of_different_automata_are_refused():
    dl = np.arange(5.0)
    with pytest.raises(ValueError, match="different samples"):
        complexity_analysis([evaluation(dl, dl, dl), evaluation(dl, dl, dl + 1)])


def test_too_few_blocks_give_counts_and_the_reason():
    result = complexity_analysis([evaluation(np.ones(3), np.ones(3), np.arange(3.0))])
    assert result.n_blocks == 3 and result.partial_controlling_nll is None and "too few" in result.error
