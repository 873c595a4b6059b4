"""Probabilistic finite automata: structure, sampling statistics, description length, probabilities."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import comb

from qphi.errors import QPhiError
from qphi.tasks import ALPHABET, PFA, random_pfa


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _path_states(pfa: PFA, string: str) -> list[int]:
    """The states visited before each character, read off the (S, S) symbol matrix."""
    symbols = pfa.transition_symbols
    state, states = 0, []
    for char in string:
        states.append(state)
        (targets,) = torch.nonzero(symbols[state] == ALPHABET.index(char), as_tuple=True)
        assert targets.numel() == 1, f"letter {char!r} cannot leave state {state}"
        state = int(targets[0])
    return states


# a hand-made automaton: 0 -a-> 1, 0 -b-> 2, 1 -a-> 1, 2 -c-> 1, 2 -a-> 2
HAND_EDGES = [(0, "a", 1), (0, "b", 2), (1, "a", 1), (2, "c", 1), (2, "a", 2)]


@pytest.fixture(scope="module")
def hand() -> PFA:
    return PFA.from_edges(HAND_EDGES, sequence_length=(3, 4))


@pytest.fixture(scope="module")
def many_automata() -> list[PFA]:
    generator = _gen(1)
    return [random_pfa(generator) for _ in range(600)]


def test_random_automata_obey_every_structural_rule(many_automata):
    sizes, degrees, vocab = Counter(), Counter(), Counter()
    for pfa in many_automata:
        symbols, probs = pfa.transition_symbols, pfa.transition_probs
        size = pfa.num_states
        assert symbols.shape == probs.shape == (size, size)
        assert 4 <= size <= 12
        assert (symbols[:, 0] == -1).all(), "no edge may enter the start state"
        for s in range(size):
            letters = symbols[s][symbols[s] >= 0]
            assert 1 <= letters.numel() <= 3
            assert letters.unique().numel() == letters.numel(), "letters leaving a state must differ"
            assert torch.allclose(probs[s][symbols[s] >= 0], torch.tensor(1.0 / letters.numel(), dtype=probs.dtype))
            assert (probs[s][symbols[s] < 0] == 0).all()
            degrees[letters.numel()] += 1
        assert pfa.num_edges == int((symbols >= 0).sum())
        assert pfa.vocab_size == symbols[symbols >= 0].unique().numel() <= 17
        sizes[size] += 1
        vocab[pfa.vocab_size] += 1
    assert set(sizes) == set(range(4, 13)), "n must range over 3..11"
    assert stats.chisquare(list(sizes.values())).pvalue > 1e-4, "n must be uniform"
    assert stats.chisquare(list(degrees.values())).pvalue > 1e-4, "k must be uniform over 1..3"
    assert max(vocab) >= 15


def test_letters_are_emitted_with_the_edge_probabilities():
    generator = _gen(2)
    for _ in range(3):
        pfa = random_pfa(generator)
        counts: dict[int, Counter] = {}
        for sequence in pfa.sample_sequences([40] * 400, generator):
            for state, char in zip(_path_states(pfa, sequence), sequence, strict=True):
                counts.setdefault(state, Counter())[char] += 1
        for state, counter in counts.items():
            expected = sorted(ALPHABET[i] for i in pfa.transition_symbols[state].tolist() if i >= 0)
            assert set(counter) <= set(expected)
            if len(expected) > 1 and sum(counter.values()) >= 100:
                assert set(counter) == set(expected)
                observed = [counter[c] for c in expected]
                assert stats.chisquare(observed).pvalue > 1e-4, f"state {state}: {observed}"


def test_sample_lengths_and_letters(hand):
    generator = _gen(3)
    lengths = Counter(len(hand.sample(generator)) for _ in range(400))
    assert set(lengths) == {3, 4}
    pfa = random_pfa(generator, sequence_length=(5, 5))
    for _ in range(50):
        sequence = pfa.sample(generator)
        assert len(sequence) == 5 and set(sequence) <= set(pfa.vocabulary)
        assert math.isfinite(pfa.log_prob(sequence))


def test_description_length_by_hand(hand):
    # S = 3 states, m = 5 edges, v = 3 letters {a, b, c}: ln C(18, 3) + 5 (2 ln 3 + ln 3)
    assert hand.num_states == 3 and hand.num_edges == 5 and hand.vocabulary == "abc"
    assert hand.description_length == pytest.approx(math.log(816) + 5 * 3 * math.log(3))


def test_description_length_uses_the_effective_vocabulary(many_automata):
    for pfa in many_automata[:100]:
        symbols = pfa.transition_symbols
        v = len(set(symbols[symbols >= 0].tolist()))
        m = int((symbols >= 0).sum())
        size = symbols.shape[0]
        expected = math.log(comb(18, v, exact=True)) + m * (2 * math.log(size) + math.log(v))
        assert pfa.description_length == pytest.approx(expected)


def test_log_prob_by_hand(hand):
    assert hand.log_prob("") == 0.0
    assert hand.log_prob("a") == pytest.approx(math.log(1 / 2))
    assert hand.log_prob("aaa") == pytest.approx(math.log(1 / 2))  # 0 -a-> 1 -a-> 1 -a-> 1
    assert hand.log_prob("bac") == pytest.approx(math.log(1 / 8))  # 0 -b-> 2 -a-> 2 -c-> 1
    assert hand.log_prob("bca") == pytest.approx(math.log(1 / 4))
    assert hand.log_prob("c") == -math.inf
    assert hand.log_prob("ab") == -math.inf
    assert hand.log_prob("a z") == -math.inf


def test_probabilities_of_all_strings_of_a_length_sum_to_one(hand):
    generator = _gen(4)
    for pfa in [hand, random_pfa(generator, vocab_size=(4, 5))]:
        letters = pfa.vocabulary
        total = sum(math.exp(pfa.log_prob("".join(s))) for s in itertools.product(letters, repeat=4))
        assert total == pytest.approx(1.0)


def test_sequence_entropy_by_hand_and_by_enumeration(hand):
    # state distributions: (1,0,0), (0,1/2,1/2), (0,3/4,1/4); out-degrees 2, 1, 2
    assert hand.sequence_entropy(3) == pytest.approx(math.log(2) * (1 + 1 / 2 + 1 / 4))
    generator = _gen(5)
    for pfa in [hand, random_pfa(generator, vocab_size=(4, 5))]:
        for length in (1, 3, 5):
            probs = np.exp([pfa.log_prob("".join(s)) for s in itertools.product(pfa.vocabulary, repeat=length)])
            probs = probs[probs > 0]
            assert pfa.sequence_entropy(length) == pytest.approx(-(probs * np.log(probs)).sum())


def test_entropy_rate_matches_sampled_sequences(hand):
    # over lengths 3 and 4: (H3/3 + H4/4) / 2, with the fourth step's distribution (0, 7/8, 1/8)
    h = [1, 1 / 2, 1 / 4, 1 / 8]
    assert hand.entropy_rate == pytest.approx(math.log(2) * (sum(h[:3]) / 3 + sum(h) / 4) / 2)
    generator = _gen(6)
    pfa = random_pfa(generator)
    rates = [-pfa.log_prob(x) / len(x) for x in (pfa.sample(generator) for _ in range(3000))]
    assert pfa.entropy_rate == pytest.approx(np.mean(rates), abs=4 * np.std(rates) / np.sqrt(len(rates)) + 1e-9)


def _accepted_by_brute_force(pfa: PFA, string: str) -> int:
    """From each start state the letters fix the path; the answer is the longest run."""
    symbols = pfa.transition_symbols.tolist()
    best = 0
    for start in range(pfa.num_states):
        state, length = start, 0
        for char in string:
            nxt = [t for t, c in enumerate(symbols[state]) if c >= 0 and ALPHABET[c] == char]
            if not nxt:
                break
            state, length = nxt[0], length + 1
        best = max(best, length)
    return best


def test_accepted_prefix_length():
    pfa = PFA.from_edges([(0, "a", 1), (1, "b", 2), (2, "c", 1), (2, "d", 2)])
    assert pfa.accepted_prefix_length("bcbcx") == 4
    assert pfa.accepted_prefix_length("ab") == 2
    assert pfa.accepted_prefix_length("ca") == 1  # the start state has no incoming edge
    assert pfa.accepted_prefix_length("ddcb") == 4
    assert pfa.accepted_prefix_length("") == 0
    assert pfa.accepted_prefix_length("zb") == 0
    generator = _gen(7)
    for _ in range(40):
        pfa = random_pfa(generator)
        sequence = pfa.sample(generator)
        assert pfa.accepted_prefix_length(sequence) == len(sequence)
        noise = "".join(ALPHABET[i] for i in torch.randint(0, 18, (30,), generator=generator).tolist())
        assert pfa.accepted_prefix_length(noise) == _accepted_by_brute_force(pfa, noise)


def test_relabelled_keeps_the_graph_and_maps_letters_one_to_one():
    generator = _gen(8)
    pfa = random_pfa(generator)
    before = pfa.transition_symbols.clone()
    seen = set()
    for _ in range(20):
        new = pfa.relabelled(generator)
        assert torch.equal(new.transition_symbols >= 0, before >= 0)
        pairs = set(
            zip(
                before[before >= 0].tolist(),
                new.transition_symbols[before >= 0].tolist(),
                strict=True,
            )
        )
        assert len({a for a, _ in pairs}) == len({b for _, b in pairs}) == len(pairs) == pfa.vocab_size
        assert new.description_length == pytest.approx(pfa.description_length)
        seen.add(new.vocabulary)
    assert torch.equal(pfa.transition_symbols, before)
    assert len(seen) > 10


def test_from_edges_round_trip_and_errors(hand):
    assert PFA.from_edges(hand.edges, sequence_length=hand.sequence_length) == hand
    assert PFA.from_edges([(0, 0, 1), (1, 17, 1)]).vocabulary == "ar"
    with pytest.raises(QPhiError, match="same letter"):
        PFA.from_edges([(0, "a", 1), (0, "a", 2), (1, "a", 1), (2, "a", 1)])
    with pytest.raises(QPhiError, match="targets"):
        PFA.from_edges([(0, "a", 1), (0, "b", 1), (1, "a", 1)])
    with pytest.raises(QPhiError, match="letter"):
        PFA.from_edges([(0, "s", 1), (1, "a", 1)])
    with pytest.raises(QPhiError, match="no outgoing edge"):
        PFA.from_edges([(0, "a", 1)])
    with pytest.raises(QPhiError, match="outside"):
        PFA.from_edges([(0, "a", 5), (1, "a", 1)], num_states=2)


def test_random_pfa_respects_its_ranges_and_rejects_bad_ones():
    generator = _gen(9)
    for _ in range(100):
        pfa = random_pfa(generator, vocab_size=(3, 3), states=(2, 2), edges_per_state=(2, 2))
        assert pfa.num_states == 3 and pfa.num_edges == 6 and pfa.vocab_size <= 3
    with pytest.raises(QPhiError, match="edges_per_state"):
        random_pfa(generator, states=(2, 5), edges_per_state=(1, 3))
    with pytest.raises(QPhiError, match="vocab_size"):
        random_pfa(generator, vocab_size=(4, 19))
