"""Known answers (SPEC §2.6): trained with the library's defaults, every discrete PHi layer sends
≈ log2 |S| bits where its input is needed later, ≈ 0 where it cannot help, reports exactly the code
length of what it sends — and the first implementation's KL rate shows the hedging gap it had."""

from __future__ import annotations

import math
from functools import cache

import pytest

from qphi.bottlenecks import registry
from qphi.experiments.known_answer import KnownAnswerConfig, KnownAnswerResult, run
from qphi.phi import PHiConfig

# One pair of the 8 signal letters merged onto one code costs 0.25 bits: allowed, no more.
SIGNAL_TOLERANCE_BITS = 0.3
UNNEEDED_BITS = 0.1  # at n and n' (useless) and at the repeated s (predictable)


@cache
def trained(name: str, **options) -> KnownAnswerResult:
    return run(KnownAnswerConfig(phi=PHiConfig(d_model=32, bottleneck=name, **options)))


def assert_sums_agree(result: KnownAnswerResult) -> None:
    """Σ PHi is Σ −log2 p(sent code) to float error, and the range coder pays it within 1 % + a word."""
    assert result.phi_bits_total == pytest.approx(result.code_length_bits_total, rel=1e-6)
    assert result.code_length_bits_total * 0.999 <= result.coded_bits_total
    assert result.coded_bits_total <= 1.01 * result.code_length_bits_total + 64


@pytest.mark.parametrize("name", registry.discrete_names())
def test_a_discrete_layer_sends_what_is_needed_and_nothing_else(name):
    result = trained(name)
    kinds = result.kinds
    assert kinds["signal"].phi_bits == pytest.approx(result.ideal_signal_bits, abs=SIGNAL_TOLERANCE_BITS)
    assert kinds["noise"].phi_bits <= UNNEEDED_BITS and kinds["repeat"].phi_bits <= UNNEEDED_BITS
    assert kinds["noise"].nll <= 0.25  # the block's letter got through: the upper part predicts it after n
    assert kinds["signal"].nll == pytest.approx(math.log(8), abs=0.1)  # what follows s is noise: nothing to know
    assert_sums_agree(result)


def test_the_first_implementations_kl_rate_reports_less_than_it_sends():
    """With the KL rate the posterior hedges: the KL it reported stays below the code length of the
    codes it sent, which a coder must pay; with the code-length rate the two agree."""
    kl_rate, code_rate = trained("gumbel", rate="kl"), trained("gumbel")
    for result, hedging in ((kl_rate, True), (code_rate, False)):
        sent_bits = sum(k.phi_bits for k in result.kinds.values())
        kl_bits = sum(k.kl_bits for k in result.kinds.values())
        if hedging:
            assert kl_bits < 0.95 * sent_bits
        else:
            assert kl_bits == pytest.approx(sent_bits, rel=0.01)
        assert_sums_agree(result)
