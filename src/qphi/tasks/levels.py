"""The six learning levels of SPEC §4.2: blocks of sequences that need different computation.

A sample is a block of sequences separated by single spaces, all drawn at one level:

    0 memorised sequences   one of 10 fixed automata; sequences drawn with replacement from its 10 stored ones
    1 memorised programs    one of 10 fixed automata; fresh sequences
    2 fixed structure       one of 10 fixed graphs, its letters renamed onto a fresh vocabulary per block
    3 in-context learning   a fresh random automaton per block
    4 random                uniform letters a..r, lengths as for the automata
    5 copy                  5..9 random sequences, each followed at once by its copy (s1 s1 s2 s2 ...)

Every sequence is perturbed with probability 0.5; a perturbed sequence has each character
redrawn uniformly from a..r with probability 0.2, and those positions are flagged (a redraw
may give back the same letter). At the copy level a source is perturbed before it is
repeated, so the copy stays exact.

The fixed items of levels 0–2 come from their own generator seeded with `fixed_seed` (and
depend on the ranges and counts of the config), so every run, process and evaluation sees
the same ones and the caller's random state is never touched; every other draw comes from
the generator the caller passes.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from pydantic import Field, model_validator

from qphi.configuration import Config
from qphi.errors import QPhiError
from qphi.tasks.pfa import ALPHABET_SIZE, PFA, IntRange, check_range, draw_int, random_pfa

LEVEL_NAMES: dict[int, str] = {
    0: "memorised sequences",
    1: "memorised programs",
    2: "fixed structure, new vocabulary",
    3: "in-context language learning",
    4: "random",
    5: "copy",
}
LEVEL_KEYS: dict[int, str] = {0: "mem_seq", 1: "mem_prog", 2: "fixed_structure", 3: "icll", 4: "random", 5: "copy"}
"""Short names used as keys in result files (key_results.json, eval.json)."""
PFA_LEVELS: tuple[int, ...] = (0, 1, 2, 3)
TRAINING_LEVELS: tuple[int, ...] = (0, 1, 2, 3, 4)

_SPACE = ord(" ")
_LETTER_A = ord("a")


class LevelConfig(Config):
    """Ranges (closed) and rates of the learning levels; the defaults are SPEC §4.1–4.2."""

    sequences_per_block: tuple[int, int] = (10, 19)
    sequence_length: tuple[int, int] = (10, 49)
    vocab_size: tuple[int, int] = Field((4, 17), description="letters drawn for an automaton (of 18)")
    states: tuple[int, int] = Field((3, 11), description="states of an automaton besides the start state")
    edges_per_state: tuple[int, int] = (1, 3)
    perturb_sequence_prob: float = Field(0.5, ge=0, le=1, description="chance that a sequence is perturbed")
    perturb_char_prob: float = Field(
        0.2, ge=0, le=1, description="chance that a perturbed sequence's character is redrawn"
    )
    num_fixed_automata: int = Field(10, ge=1, description="automata of each of levels 0, 1 and 2")
    num_fixed_sequences: int = Field(10, ge=1, description="stored sequences of each level-0 automaton")
    fixed_seed: int = Field(123, description="seed of the fixed items of levels 0–2")

    @model_validator(mode="after")
    def _check(self) -> LevelConfig:
        try:
            check_range("sequences_per_block", self.sequences_per_block, 1)
            check_range("sequence_length", self.sequence_length, 1)
            check_range("vocab_size", self.vocab_size, 1, ALPHABET_SIZE)
            check_range("states", self.states, 1)
            check_range("edges_per_state", self.edges_per_state, 1)
        except QPhiError as e:
            raise ValueError(str(e)) from None
        if self.edges_per_state[1] > min(self.vocab_size[0], self.states[0]):
            raise ValueError("edges_per_state's maximum must be <= the minimum of vocab_size and of states")
        low, high = self.sequences_per_block
        if math.ceil(low / 2) > high // 2:
            raise ValueError("sequences_per_block must include an even count (copy blocks are made of pairs)")
        return self

    @property
    def automaton_ranges(self) -> dict[str, IntRange]:
        """The keyword arguments of `random_pfa`."""
        return {
            "vocab_size": self.vocab_size,
            "states": self.states,
            "edges_per_state": self.edges_per_state,
            "sequence_length": self.sequence_length,
        }


@dataclass(frozen=True, eq=False)
class Sample:
    """One block of sequences and its per-character metadata (arrays of shape (len(text),)).

    perturbed: True where noise replaced the character (the replacement may equal the original).
    block_start: True on the first character of every sequence of the block.
    clean_text: the block before perturbation.
    fixed_index: which fixed automaton of levels 0–2 was used, -1 otherwise.
    truncated: cut to fit a row, so no EOS follows (the block may have gone on).
    """

    text: str
    level: int
    perturbed: np.ndarray
    block_start: np.ndarray
    clean_text: str
    automaton: PFA | None = None
    fixed_index: int = -1
    truncated: bool = False

    @property
    def sequences(self) -> list[str]:
        return self.text.split(" ")

    @property
    def num_states(self) -> int:
        """S of the automaton (start state included), -1 at levels without one."""
        return self.automaton.num_states if self.automaton is not None else -1

    @property
    def num_edges(self) -> int:
        return self.automaton.num_edges if self.automaton is not None else -1

    @property
    def vocab_size(self) -> int:
        return self.automaton.vocab_size if self.automaton is not None else -1

    @property
    def description_length(self) -> float:
        """Nats (SPEC §4.1), NaN at levels without an automaton."""
        return self.automaton.description_length if self.automaton is not None else math.nan

    def truncate(self, num_chars: int) -> Sample:
        """The first `num_chars` characters with their metadata, marked truncated (no EOS follows it)."""
        return replace(
            self,
            text=self.text[:num_chars],
            perturbed=self.perturbed[:num_chars],
            block_start=self.block_start[:num_chars],
            clean_text=self.clean_text[:num_chars],
            truncated=True,
        )


class PFALevels:
    """Generator of learning-level blocks; holds the fixed items of levels 0–2.

    memorised_automata / memorised_sequences: level 0 (automaton i and its stored sequences);
    program_automata: level 1; structure_automata: level 2 (graphs whose letters get renamed).
    """

    def __init__(self, config: LevelConfig | None = None) -> None:
        self.config = config if config is not None else LevelConfig()
        cfg = self.config
        fixed = torch.Generator().manual_seed(cfg.fixed_seed)
        count = cfg.num_fixed_automata
        self.memorised_automata: tuple[PFA, ...] = self._automata(count, fixed)
        self.memorised_sequences: tuple[tuple[str, ...], ...] = tuple(
            tuple(pfa.sample_sequences(self._lengths(cfg.num_fixed_sequences, fixed), fixed))
            for pfa in self.memorised_automata
        )
        self.program_automata: tuple[PFA, ...] = self._automata(count, fixed)
        self.structure_automata: tuple[PFA, ...] = self._automata(count, fixed)

    def _automata(self, count: int, generator: torch.Generator) -> tuple[PFA, ...]:
        return tuple(random_pfa(generator, **self.config.automaton_ranges) for _ in range(count))

    def _lengths(self, count: int, generator: torch.Generator) -> list[int]:
        return draw_int(*self.config.sequence_length, generator, n=count)

    def sample(self, level: int, generator: torch.Generator) -> Sample:
        """One block of the given level, drawing only from `generator`."""
        if level not in LEVEL_NAMES:
            raise QPhiError(f"level {level} does not exist: use one of {sorted(LEVEL_NAMES)}")
        cfg = self.config
        fixed_index, automaton = -1, None
        if level in (0, 1, 2):
            fixed_index = draw_int(0, cfg.num_fixed_automata - 1, generator)
        if level == 5:
            pairs = draw_int(
                math.ceil(cfg.sequences_per_block[0] / 2),
                cfg.sequences_per_block[1] // 2,
                generator,
            )
            sources = self._random_sequences(pairs, generator)
            return self._block(level, sources, [i for i in range(pairs) for _ in (0, 1)], generator)
        count = draw_int(*cfg.sequences_per_block, generator)
        if level == 0:
            automaton = self.memorised_automata[fixed_index]
            stored = self.memorised_sequences[fixed_index]
            picks = torch.randint(0, len(stored), (count,), generator=generator).tolist()
            sequences = [stored[i] for i in picks]
        elif level == 4:
            sequences = self._random_sequences(count, generator)
        else:
            if level == 1:
                automaton = self.program_automata[fixed_index]
            elif level == 2:
                automaton = self.structure_automata[fixed_index].relabelled(generator)
            else:
                automaton = random_pfa(generator, **cfg.automaton_ranges)
            sequences = automaton.sample_sequences(self._lengths(count, generator), generator)
        return self._block(level, sequences, list(range(count)), generator, automaton, fixed_index)

    def _random_sequences(self, count: int, generator: torch.Generator) -> list[str]:
        """Uniform letters a..r, lengths uniform in `sequence_length`."""
        lengths = self._lengths(count, generator)
        letters = torch.randint(0, ALPHABET_SIZE, (sum(lengths),), generator=generator).numpy()
        text = (letters.astype(np.uint8) + _LETTER_A).tobytes().decode("ascii")
        bounds = np.cumsum([0, *lengths]).tolist()
        return [text[a:b] for a, b in itertools.pairwise(bounds)]

    def _block(
        self,
        level: int,
        sources: Sequence[str],
        order: list[int],
        generator: torch.Generator,
        automaton: PFA | None = None,
        fixed_index: int = -1,
    ) -> Sample:
        """Perturb each source sequence once, then lay them out in `order`, space-separated.

        The copy level repeats a source, and both copies carry the same perturbation, so the
        second is an exact copy of the first.
        """
        cfg = self.config
        lengths = np.array([len(s) for s in sources])
        clean = np.frombuffer("".join(sources).encode("ascii"), dtype=np.uint8)
        sequence_of_char = np.repeat(np.arange(len(sources)), lengths)
        noisy_sequence = torch.rand(len(sources), generator=generator).numpy() < cfg.perturb_sequence_prob
        noisy_char = torch.rand(clean.size, generator=generator).numpy() < cfg.perturb_char_prob
        replacement = torch.randint(0, ALPHABET_SIZE, (clean.size,), generator=generator).numpy()
        perturbed = noisy_sequence[sequence_of_char] & noisy_char
        noisy = np.where(perturbed, replacement.astype(np.uint8) + _LETTER_A, clean)

        # gather index from block characters to source characters, -1 at separating spaces
        starts = np.concatenate([[0], np.cumsum(lengths)])
        pieces = []
        for i, source in enumerate(order):
            if i:
                pieces.append(np.array([-1]))
            pieces.append(np.arange(starts[source], starts[source + 1]))
        index = np.concatenate(pieces)
        space = index < 0
        index = np.where(space, 0, index)
        text = np.where(space, _SPACE, noisy[index]).astype(np.uint8)
        clean_text = np.where(space, _SPACE, clean[index]).astype(np.uint8)
        block_start = np.zeros(index.size, dtype=bool)
        block_start[0] = True
        block_start[1:] = space[:-1]
        return Sample(
            text=text.tobytes().decode("ascii"),
            level=level,
            perturbed=perturbed[index] & ~space,
            block_start=block_start,
            clean_text=clean_text.tobytes().decode("ascii"),
            automaton=automaton,
            fixed_index=fixed_index,
        )
