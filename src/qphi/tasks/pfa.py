"""Probabilistic finite automata over the letters a..r (SPEC §4.1).

An automaton has states 0..S-1, state 0 being the start state. Every state has at least one
outgoing edge; the edges leaving a state carry distinct letters and go to distinct targets,
and are taken with equal probability 1/k (k = the state's out-degree). A letter therefore
determines the next state, so the probability of a string is a product along one path.
There are no final states: a sequence is a walk of a given length from the start state.

The matrices are the public view; sampling, scoring and acceptance run on small per-state
Python/numpy tables built once at construction, because blocks of ~450 characters are
generated one walk at a time on data-loader workers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from functools import cached_property

import numpy as np
import torch
from torch import Tensor

from qphi.errors import QPhiError

ALPHABET = "abcdefghijklmnopqr"
ALPHABET_SIZE = len(ALPHABET)

IntRange = tuple[int, int]


def draw_int(low: int, high: int, generator: torch.Generator, n: int | None = None) -> int | list[int]:
    """Uniform integer(s) in the closed range [low, high], from `generator` only."""
    values = torch.randint(low, high + 1, (1 if n is None else n,), generator=generator)
    return int(values[0]) if n is None else values.tolist()


def check_range(name: str, bounds: IntRange, minimum: int, maximum: int | None = None) -> None:
    """Raise a `QPhiError` unless minimum <= low <= high (<= maximum)."""
    low, high = bounds
    if low < minimum or high < low or (maximum is not None and high > maximum):
        top = f" and at most {maximum}" if maximum is not None else ""
        raise QPhiError(f"{name} range {bounds} is invalid: use (low, high) with {minimum} <= low <= high{top}")


class PFA:
    """A probabilistic finite automaton with uniform edge probabilities.

    transition_symbols (S, S) int64: the letter index 0..17 on the edge s → t, -1 where there
    is no edge. Use `random_pfa` to sample one and `PFA.from_edges` to write one by hand.
    `sequence_length` is the closed range of lengths that `sample` draws from (and over which
    `entropy_rate` averages). Treat an instance as immutable.
    """

    def __init__(self, transition_symbols: Tensor, sequence_length: IntRange = (10, 49)) -> None:
        symbols = torch.as_tensor(transition_symbols, dtype=torch.int64).clone()
        if symbols.ndim != 2 or symbols.shape[0] != symbols.shape[1] or symbols.shape[0] < 1:
            raise QPhiError(f"transition_symbols must be a square (S, S) matrix, got shape {tuple(symbols.shape)}")
        if symbols.min() < -1 or symbols.max() >= ALPHABET_SIZE:
            raise QPhiError("transition_symbols must hold -1 (no edge) or a letter index 0..17")
        check_range("sequence_length", sequence_length, 1)
        table = symbols.numpy()
        degree = (table >= 0).sum(axis=1)
        letter_counts = (table[:, :, None] == np.arange(ALPHABET_SIZE)).sum(axis=1)  # (S, 18)
        if (degree == 0).any():
            raise QPhiError(
                f"state {int(np.argmin(degree))} has no outgoing edge: every state needs one (there are no final states)"
            )
        if (letter_counts > 1).any():
            raise QPhiError(
                f"state {int(np.argmax(letter_counts.max(axis=1)))} has two edges with the same letter: "
                "the letters leaving a state must differ"
            )
        self._symbols = symbols
        self.sequence_length: IntRange = (int(sequence_length[0]), int(sequence_length[1]))
        self._out_degree: list[int] = degree.tolist()
        # per state, edges in order of their target: (letter character, target state)
        self._edges: list[list[tuple[str, int]]] = [
            [(ALPHABET[c], t) for t, c in enumerate(row) if c >= 0] for row in table.tolist()
        ]
        # (S, 18) next state for each letter, -1 if that letter cannot be emitted
        self._next = np.full((len(table), ALPHABET_SIZE), -1, dtype=np.int64)
        sources, targets = np.nonzero(table >= 0)
        self._next[sources, table[sources, targets]] = targets
        self._draw_range = math.lcm(*self._out_degree)

    @classmethod
    def from_edges(
        cls,
        edges: Iterable[tuple[int, str | int, int]],
        num_states: int | None = None,
        sequence_length: IntRange = (10, 49),
    ) -> PFA:
        """Build an automaton from (source, letter, target) triples; letters as 'a'..'r' or 0..17.

        `num_states` (S, start state included) defaults to one more than the largest state named.
        """
        edge_list = [(int(s), _letter_index(c), int(t)) for s, c, t in edges]
        if not edge_list:
            raise QPhiError("an automaton needs at least one edge")
        size = num_states if num_states is not None else 1 + max(max(s, t) for s, _, t in edge_list)
        symbols = torch.full((size, size), -1, dtype=torch.int64)
        for s, c, t in edge_list:
            if not (0 <= s < size and 0 <= t < size):
                raise QPhiError(f"edge ({s}, {ALPHABET[c]!r}, {t}) names a state outside 0..{size - 1}")
            if symbols[s, t] >= 0:
                raise QPhiError(f"two edges go from state {s} to state {t}: the targets leaving a state must differ")
            symbols[s, t] = c
        return cls(symbols, sequence_length=sequence_length)

    # --- structure -------------------------------------------------------------------------

    @property
    def transition_symbols(self) -> Tensor:
        """(S, S) int64: letter index on the edge s → t, -1 where there is no edge."""
        return self._symbols

    @cached_property
    def transition_probs(self) -> Tensor:
        """(S, S) float64: probability of taking the edge s → t (1/k on each of k edges)."""
        degree = torch.tensor(self._out_degree, dtype=torch.float64).unsqueeze(1)
        return (self._symbols >= 0).to(torch.float64) / degree

    @property
    def num_states(self) -> int:
        """S, the start state included."""
        return self._symbols.shape[0]

    @property
    def num_edges(self) -> int:
        return sum(self._out_degree)

    @property
    def out_degree(self) -> list[int]:
        return list(self._out_degree)

    @cached_property
    def vocabulary(self) -> str:
        """The letters that label at least one edge, in alphabetical order."""
        used = torch.unique(self._symbols[self._symbols >= 0]).tolist()
        return "".join(ALPHABET[i] for i in used)

    @property
    def vocab_size(self) -> int:
        """v, the effective vocabulary: the number of distinct letters on edges."""
        return len(self.vocabulary)

    @property
    def edges(self) -> list[tuple[int, str, int]]:
        """All edges as (source, letter, target), sorted by source then target."""
        return [(s, c, t) for s, out in enumerate(self._edges) for c, t in out]

    @property
    def description_length(self) -> float:
        """ln C(18, v) + m·(2·ln S + ln v) nats: choose the letters, then name each edge's ends and label."""
        v, m, S = self.vocab_size, self.num_edges, self.num_states
        return math.log(math.comb(ALPHABET_SIZE, v)) + m * (2 * math.log(S) + math.log(v))

    # --- sampling --------------------------------------------------------------------------

    def sample(self, generator: torch.Generator) -> str:
        """One sequence from the start state, its length uniform in `sequence_length`."""
        return self.sample_sequences([draw_int(*self.sequence_length, generator)], generator)[0]

    def sample_sequences(self, lengths: Sequence[int], generator: torch.Generator) -> list[str]:
        """Independent sequences of the given lengths, each a walk from the start state.

        One integer d uniform in [0, lcm of the out-degrees) per character picks edge d mod k,
        which is uniform over the k edges of any state; all draws are made in one call.
        """
        draws = torch.randint(0, self._draw_range, (sum(lengths),), generator=generator).tolist()
        edges = self._edges
        degree = self._out_degree
        sequences = []
        position = 0
        for length in lengths:
            state = 0
            letters = []
            for d in draws[position : position + length]:
                letter, state = edges[state][d % degree[state]]
                letters.append(letter)
            sequences.append("".join(letters))
            position += length
        return sequences

    def relabelled(self, generator: torch.Generator) -> PFA:
        """The same graph with its letters mapped one-to-one onto a fresh random vocabulary of equal size."""
        old = torch.tensor([ALPHABET.index(c) for c in self.vocabulary], dtype=torch.int64)
        new = torch.randperm(ALPHABET_SIZE, generator=generator)[: old.numel()]
        mapping = torch.full((ALPHABET_SIZE + 1,), -1, dtype=torch.int64)  # index -1 (no edge) → -1
        mapping[old] = new
        return PFA(mapping[self._symbols], sequence_length=self.sequence_length)

    # --- scoring ---------------------------------------------------------------------------

    def log_prob(self, string: str) -> float:
        """ln P(the first len(string) symbols of a walk from the start state equal `string`).

        The length distribution is not included. -inf if no path emits the string.
        """
        state, total = 0, 0.0
        for char in string:
            index = ALPHABET.find(char)
            target = int(self._next[state, index]) if index >= 0 else -1
            if target < 0:
                return -math.inf
            total -= math.log(self._out_degree[state])
            state = target
        return total

    def _expected_step_entropies(self, length: int) -> np.ndarray:
        """(length,) E[ln k_{s_t}] for t < length, with the state distribution π_t = e_0 P^t."""
        probs = self.transition_probs.numpy()
        step_entropy = np.log(np.asarray(self._out_degree, dtype=np.float64))
        pi = np.zeros(self.num_states)
        pi[0] = 1.0
        out = np.empty(length)
        for t in range(length):
            out[t] = pi @ step_entropy
            pi = pi @ probs
        return out

    def sequence_entropy(self, length: int) -> float:
        """Exact entropy (nats) of a sequence of the given length = E[-ln P(sequence)]."""
        return float(self._expected_step_entropies(length).sum())

    @cached_property
    def entropy_rate(self) -> float:
        """Expected per-symbol entropy of a sampled sequence: E_L[H(sequence of length L) / L].

        L is uniform over `sequence_length`; H is computed exactly by propagating the state
        distribution (each step contributes E[ln k] of the current state). Equals the mean
        of -log_prob(x)/len(x) over sampled sequences x.
        """
        low, high = self.sequence_length
        cumulative = np.cumsum(self._expected_step_entropies(high))
        lengths = np.arange(low, high + 1)
        return float(np.mean(cumulative[lengths - 1] / lengths))

    def accepted_prefix_length(self, string: str) -> int:
        """Length of the longest prefix of `string` that some path, started from any state, emits.

        Runs the automaton as an NFA whose initial set is all states (SPEC §5.4); any character
        outside a..r ends the prefix.
        """
        active = np.ones(self.num_states, dtype=bool)
        for accepted, char in enumerate(string):
            index = ALPHABET.find(char)
            if index < 0:
                return accepted
            targets = self._next[active, index]
            targets = targets[targets >= 0]
            if targets.size == 0:
                return accepted
            active = np.zeros(self.num_states, dtype=bool)
            active[targets] = True
        return len(string)

    # --- identity --------------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PFA):
            return NotImplemented
        return self.sequence_length == other.sequence_length and torch.equal(self._symbols, other._symbols)

    def __getstate__(self) -> dict:
        """Tensors pickle as arrays: DataLoader workers would give each its own shared-memory block."""
        state = {k: v for k, v in self.__dict__.items() if not isinstance(v, Tensor)}
        state["_symbols"] = self._symbols.numpy()
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _symbols=torch.from_numpy(state["_symbols"]))

    def __hash__(self) -> int:
        return hash((self.sequence_length, tuple(self._symbols.flatten().tolist())))

    def __repr__(self) -> str:
        return (
            f"PFA(states={self.num_states}, edges={self.num_edges}, vocabulary='{self.vocabulary}', "
            f"description_length={self.description_length:.2f})"
        )


def _letter_index(letter: str | int) -> int:
    if isinstance(letter, str):
        index = ALPHABET.find(letter) if len(letter) == 1 else -1
    else:
        index = int(letter)
    if not 0 <= index < ALPHABET_SIZE:
        raise QPhiError(f"edge letter {letter!r} is invalid: use one of 'a'..'r' or an index 0..17")
    return index


def random_pfa(
    generator: torch.Generator,
    *,
    vocab_size: IntRange = (4, 17),
    states: IntRange = (3, 11),
    edges_per_state: IntRange = (1, 3),
    sequence_length: IntRange = (10, 49),
) -> PFA:
    """Sample an automaton as in SPEC §4.1, drawing only from `generator`.

    vocab_size: v letters drawn without replacement from a..r; states: n, the number of states
    besides the start state 0 (S = n + 1); edges_per_state: k for every state, to k distinct
    targets among 1..n labelled with k distinct letters of the vocabulary. Ranges are closed.
    """
    check_range("vocab_size", vocab_size, 1, ALPHABET_SIZE)
    check_range("states", states, 1)
    check_range("edges_per_state", edges_per_state, 1)
    check_range("sequence_length", sequence_length, 1)
    if edges_per_state[1] > min(vocab_size[0], states[0]):
        raise QPhiError(
            f"edges_per_state up to {edges_per_state[1]} cannot always have distinct letters and targets: "
            f"keep its maximum <= the minimum vocab_size ({vocab_size[0]}) and states ({states[0]})"
        )
    v = draw_int(*vocab_size, generator)
    vocabulary = torch.randperm(ALPHABET_SIZE, generator=generator)[:v]
    n = draw_int(*states, generator)
    size = n + 1
    max_k = edges_per_state[1]
    degree = torch.randint(edges_per_state[0], max_k + 1, (size, 1), generator=generator)
    # a random ordering per state, cut to the first k: distinct targets and distinct letters
    targets = torch.rand(size, n, generator=generator).argsort(dim=1)[:, :max_k] + 1
    letters = vocabulary[torch.rand(size, v, generator=generator).argsort(dim=1)[:, :max_k]]
    used = torch.arange(max_k).unsqueeze(0) < degree  # (S, max_k)
    sources = torch.arange(size).unsqueeze(1).expand(size, max_k)
    symbols = torch.full((size, size), -1, dtype=torch.int64)
    symbols[sources[used], targets[used]] = letters[used]
    return PFA(symbols, sequence_length=sequence_length)
