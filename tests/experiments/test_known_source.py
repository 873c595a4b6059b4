"""PHi as a code length on a source of known entropy rate: a trained prior's code length must come
down to the rate, from above, and the real coder must pay what the prior says."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from qphi.experiments.known_source import letter_batch, measure_on_source, source_phi_config, train_symbol_coder
from qphi.tasks import PFA

# A first-order Markov chain over a, b, c, d: each letter has its own state (the last letter is
# the state), after a and c the next letter is certain, after b it is one of 2, after d one of 3.
# Its entropy rate ((4 + 3 log2 3) / 13 ≈ 0.67 bits; 0.71 for walks of 32 letters from the start,
# whose first letter costs 2 bits) is far below the entropy of its letter frequencies (≈ 1.99 bits),
# so a prior that ignored its context could not come near the rate.
MARKOV = PFA.from_edges(
    [(0, "a", 1), (0, "b", 2), (0, "c", 3), (0, "d", 4), (1, "b", 2), (2, "c", 3), (2, "a", 1), (3, "d", 4),
     (4, "a", 1), (4, "b", 2), (4, "c", 3)]
)  # fmt: skip
LENGTH = 32
TOLERANCE_BITS = 0.03  # how far above the entropy rate the prior may stay after training


def stationary_entropy_rate_bits() -> float:
    """The chain's entropy rate from its stationary distribution (states 1..4), computed apart from
    `PFA.sequence_entropy` (which propagates the start state)."""
    probs = MARKOV.transition_probs.numpy()[1:, 1:]
    values, vectors = np.linalg.eig(probs.T)
    pi = np.real(vectors[:, np.argmin(abs(values - 1))])
    pi /= pi.sum()
    return float(pi @ np.log2(MARKOV.out_degree[1:]))


def test_the_source_is_what_the_test_needs():
    exact = MARKOV.sequence_entropy(LENGTH) / LENGTH / math.log(2)
    # a walk from the start state: 2 bits for the first letter, then the stationary rate
    # stationary π = (3, 4, 3, 3) / 13; only b (1 bit) and d (log2 3 bits) leave a choice
    assert stationary_entropy_rate_bits() == pytest.approx((4 + 3 * math.log2(3)) / 13)
    assert exact == pytest.approx(stationary_entropy_rate_bits(), abs=2.0 / LENGTH)
    letters = letter_batch(MARKOV, 256, LENGTH, torch.Generator().manual_seed(0))
    frequencies = torch.bincount(letters.flatten()).double() / letters.numel()
    assert float(-(frequencies * frequencies.log2()).sum()) > exact + 1.0


@pytest.fixture(scope="module")
def measured():
    coder = train_symbol_coder(MARKOV, source_phi_config("gumbel", codebook_size=16), steps=150, length=LENGTH)
    return measure_on_source(coder, MARKOV, sequences=256, length=LENGTH)


def test_the_codes_carry_the_letters(measured):
    assert measured.codes_carry_letters and measured.reconstruction_accuracy == 1.0


def test_the_priors_code_length_reaches_the_entropy_rate_from_above(measured):
    # never below the source's own code length of the same letters (cross-entropy >= entropy),
    # up to the sampling noise of 8192 letters
    assert measured.phi_bits >= measured.source_code_length_bits - 0.005
    assert measured.phi_bits <= measured.entropy_rate_bits + TOLERANCE_BITS
    # what a context-free code would pay is far above
    assert measured.unigram_entropy_bits > measured.phi_bits + 1.0


def test_the_range_coder_pays_the_priors_code_length(measured):
    padding = 64 / measured.letters  # the stream ends on whole 32-bit words
    ideal = measured.phi_bits
    assert ideal * 0.999 <= measured.coded_bits <= ideal * 1.01 + padding
    assert measured.kl_bits is not None  # the Gumbel posterior's KL, reported beside PHi
