"""Learning levels: block layout, what each level draws from, perturbation, fixed items, random state."""

from __future__ import annotations

import hashlib
import inspect
import itertools
import math
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from qphi.configuration import build
from qphi.errors import QPhiError
from qphi.tasks import ALPHABET, LevelConfig, PackedBatches, PFALevels, Sample, SampleStream
from qphi.tasks.tokenizer import CharTokenizer

SRC = Path(__file__).resolve().parents[2] / "src"


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _blocks(levels: PFALevels, level: int, n: int, seed: int = 0) -> list[Sample]:
    generator = _gen(seed)
    return [levels.sample(level, generator) for _ in range(n)]


def _fingerprint(levels) -> str:
    """A digest of every fixed item of levels 0–2."""
    parts = [
        str(pfa.transition_symbols.tolist())
        for group in (levels.memorised_automata, levels.program_automata, levels.structure_automata)
        for pfa in group
    ]
    parts += [" ".join(seqs) for seqs in levels.memorised_sequences]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


@pytest.mark.parametrize("level", range(6))
def test_block_layout_and_metadata_alignment(levels, level):
    for sample in _blocks(levels, level, 40, seed=level):
        text = sample.text
        sequences = text.split(" ")
        assert set(text) <= set(ALPHABET) | {" "} and "  " not in text
        low, high = (10, 18) if level == 5 else (10, 19)
        assert low <= len(sequences) <= high
        assert all(10 <= len(s) <= 49 for s in sequences)
        assert sample.perturbed.shape == sample.block_start.shape == (len(text),)
        assert len(sample.clean_text) == len(text)
        starts = np.flatnonzero(sample.block_start).tolist()
        assert starts == np.cumsum([0] + [len(s) + 1 for s in sequences[:-1]]).tolist()
        spaces = np.array([c == " " for c in text])
        assert not sample.perturbed[spaces].any()
        differs = np.array([a != b for a, b in zip(text, sample.clean_text, strict=True)])
        assert not differs[~sample.perturbed].any(), "only perturbed positions may differ from the clean text"
        if level in (0, 1, 2, 3):
            pfa = sample.automaton
            assert pfa is not None
            assert (sample.num_states, sample.num_edges, sample.vocab_size) == (
                pfa.num_states,
                pfa.num_edges,
                pfa.vocab_size,
            )
            assert sample.description_length == pfa.description_length
            assert all(math.isfinite(pfa.log_prob(s)) for s in sample.clean_text.split(" "))
        else:
            assert sample.automaton is None and sample.num_states == -1 and math.isnan(sample.description_length)


def test_level0_blocks_only_hold_the_stored_sequences(levels):
    assert len(levels.memorised_automata) == len(levels.memorised_sequences) == 10
    assert all(len(seqs) == 10 for seqs in levels.memorised_sequences)
    quiet = PFALevels(LevelConfig(perturb_sequence_prob=0.0))
    used = Counter()
    for sample in _blocks(quiet, 0, 200):
        stored = quiet.memorised_sequences[sample.fixed_index]
        assert sample.automaton is quiet.memorised_automata[sample.fixed_index]
        assert not sample.perturbed.any()
        assert set(sample.sequences) <= set(stored)
        used.update(sample.sequences)
    assert len(used) > 80, "blocks should draw from all stored sequences"
    for sample in _blocks(levels, 0, 50):  # with noise, the clean text still holds stored sequences only
        assert set(sample.clean_text.split(" ")) <= set(levels.memorised_sequences[sample.fixed_index])


def test_level1_uses_the_fixed_programs_with_fresh_sequences(levels):
    blocks = _blocks(levels, 1, 100)
    assert {s.fixed_index for s in blocks} == set(range(10))
    for sample in blocks:
        assert sample.automaton is levels.program_automata[sample.fixed_index]
    first = [s for s in blocks if s.fixed_index == blocks[0].fixed_index]
    assert len({seq for s in first for seq in s.clean_text.split(" ")}) > 20


def test_level2_renames_letters_of_fixed_graphs_without_mutating_them(levels):
    stored = [pfa.transition_symbols.clone() for pfa in levels.structure_automata]
    vocabularies = set()
    for sample in _blocks(levels, 2, 100):
        graph = levels.structure_automata[sample.fixed_index].transition_symbols
        new = sample.automaton.transition_symbols
        assert torch.equal(new >= 0, graph >= 0)
        pairs = set(zip(graph[graph >= 0].tolist(), new[graph >= 0].tolist(), strict=True))
        assert len({a for a, _ in pairs}) == len({b for _, b in pairs}) == len(pairs)
        vocabularies.add(sample.automaton.vocabulary)
    assert len(vocabularies) > 50
    for pfa, before in zip(levels.structure_automata, stored, strict=True):
        assert torch.equal(pfa.transition_symbols, before)


def test_level3_draws_a_fresh_automaton_per_block(levels):
    automata = [s.automaton for s in _blocks(levels, 3, 50)]
    assert len(set(automata)) == 50
    assert all(s.fixed_index == -1 for s in _blocks(levels, 3, 5))


def test_level4_letters_are_uniform(levels):
    counts = Counter(c for s in _blocks(levels, 4, 60) for c in s.text if c != " ")
    assert sorted(counts) == list(ALPHABET)
    assert stats.chisquare([counts[c] for c in ALPHABET]).pvalue > 1e-4


def test_level5_repeats_every_sequence_once(levels):
    for sample in _blocks(levels, 5, 40):
        sequences = sample.sequences
        assert len(sequences) % 2 == 0
        assert sequences[0::2] == sequences[1::2]
        assert len(set(sequences[0::2])) == len(sequences) // 2


def test_perturbation_rates_and_replacement_letters():
    levels = PFALevels(LevelConfig(perturb_char_prob=1.0))
    whole = Counter()
    for sample in _blocks(levels, 3, 150):
        bounds = np.cumsum([0] + [len(s) + 1 for s in sample.sequences])
        for a, b in itertools.pairwise(bounds):
            flags = sample.perturbed[a : b - 1]
            assert flags.all() or not flags.any(), "with perturb_char_prob=1 a sequence is all or nothing"
            whole[bool(flags.all())] += 1
    assert stats.binomtest(whole[True], whole[True] + whole[False], 0.5).pvalue > 1e-4

    default = PFALevels(LevelConfig())
    flags, replaced = [], Counter()
    for sample in _blocks(default, 1, 300, seed=1):
        letters = np.array([c != " " for c in sample.text])
        flags.append(sample.perturbed[letters])
        replaced.update(c for c, f in zip(sample.text, sample.perturbed, strict=True) if f)
    rate = np.concatenate(flags).mean()
    assert rate == pytest.approx(0.5 * 0.2, abs=0.01)
    assert stats.chisquare([replaced[c] for c in ALPHABET]).pvalue > 1e-4, "replacements must be uniform letters"


def test_same_generator_seed_gives_the_same_blocks(levels):
    for level in range(6):
        a, b = _blocks(levels, level, 5, seed=11), _blocks(levels, level, 5, seed=11)
        assert [s.text for s in a] == [s.text for s in b]
        assert all(np.array_equal(x.perturbed, y.perturbed) for x, y in zip(a, b, strict=True))
        assert [s.text for s in a] != [s.text for s in _blocks(levels, level, 5, seed=12)]


def test_fixed_items_are_identical_across_instances_and_processes(levels):
    torch.manual_seed(999)
    other = PFALevels(LevelConfig())
    assert _fingerprint(other) == _fingerprint(levels)
    assert other.program_automata == levels.program_automata
    code = "\n".join(
        [
            "import hashlib",
            "from qphi.tasks import PFALevels",
            inspect.getsource(_fingerprint),
            "print(_fingerprint(PFALevels()))",
        ]
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    assert result.stdout.strip() == _fingerprint(levels)
    assert _fingerprint(PFALevels(LevelConfig(fixed_seed=124))) != _fingerprint(levels)


def test_global_random_state_is_untouched():
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    before = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state().clone())
    levels = PFALevels(LevelConfig())
    for level in range(6):
        levels.sample(level, _gen(level))
    batches = iter(PackedBatches(SampleStream(levels), CharTokenizer(), batch_size=2, row_length=512))
    next(batches)
    assert random.getstate() == before[0]
    assert np.array_equal(np.random.get_state()[1], before[1])
    assert torch.equal(torch.get_rng_state(), before[2])


def test_unknown_level_and_bad_config_are_user_errors(levels):
    with pytest.raises(QPhiError, match="level 7"):
        levels.sample(7, _gen())
    with pytest.raises(QPhiError, match="edges_per_state"):
        build(LevelConfig, {"edges_per_state": [1, 5]})
    with pytest.raises(QPhiError, match="sequence_length"):
        build(LevelConfig, {"sequence_length": [10, 5]})
    with pytest.raises(QPhiError, match="perturb_char_prob"):
        build(LevelConfig, {"perturb_char_prob": 1.5})
    with pytest.raises(QPhiError, match="unknown key"):
        build(LevelConfig, {"sequence_lenght": [10, 20]})


def test_truncate_keeps_metadata_aligned(levels):
    sample = levels.sample(3, _gen(4))
    cut = sample.truncate(25)
    assert cut.truncated and cut.text == sample.text[:25] and cut.clean_text == sample.clean_text[:25]
    assert np.array_equal(cut.perturbed, sample.perturbed[:25])
    assert np.array_equal(cut.block_start, sample.block_start[:25])
    assert cut.automaton is sample.automaton and cut.level == 3
    whole = sample.truncate(len(sample.text))
    assert whole.truncated and whole.text == sample.text
