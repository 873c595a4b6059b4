"""In-context-learning competence: what the models write, how it is counted, the typed result."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from models.hosts import tiny_model

from qphi.evaluation import icl_competence as competence
from qphi.evaluation.icl_competence import ICLCompetence, generate_sequences, icl_competence
from qphi.io import read_json, write_json
from qphi.tasks import ALPHABET, CharTokenizer, LevelConfig

SHORT = LevelConfig(sequence_length=(5, 8))


@pytest.mark.parametrize("architecture", ["transformer", "lstm"])
def test_generated_sequences_are_letters_up_to_the_limit(architecture):
    """The KV-cached (transformer) and recomputing (LSTM) paths both write letters a–r only, at most
    `max_letters`, the first space ending the sequence; the same generator state repeats them."""
    model = tiny_model(architecture, phi_after=1)
    prompts = ["abc abd ", "rqr qq ", "a "]
    first = generate_sequences(model, CharTokenizer(), prompts, torch.Generator().manual_seed(0), max_letters=12)
    again = generate_sequences(model, CharTokenizer(), prompts, torch.Generator().manual_seed(0), max_letters=12)
    assert first == again and len(first) == 3
    assert all(set(s) <= set(ALPHABET) and len(s) <= 12 for s in first)


def test_an_empty_generation_is_not_fully_accepted(monkeypatch):
    """A model that ends at once wrote nothing: accepted prefix 0, and not a fully accepted sequence.
    Odd prompts get their own last sequence back (drawn from the automaton, so fully accepted)."""

    def echo_or_nothing(model, tokenizer, prompts, generator, max_letters):
        return ["" if i % 2 == 0 else p.split()[-1] for i, p in enumerate(prompts)]

    monkeypatch.setattr(competence, "generate_sequences", echo_or_nothing)
    result = icl_competence(None, CharTokenizer(), SHORT, context_length=256, num_prompts=10, resamples=50)
    lengths = [len(e.generated) for e in result.examples]
    assert lengths[0] == 0 and lengths[1] > 0
    assert result.fully_accepted_fraction == pytest.approx(0.5)
    assert result.accepted_prefix_length.value == pytest.approx(result.generated_length_mean)


def test_the_typed_result_round_trips(tmp_path):
    model = tiny_model("transformer", phi_after=1)
    result = icl_competence(
        model, CharTokenizer(), SHORT, context_length=64, num_prompts=4, max_letters=8, resamples=20
    )
    assert isinstance(result, ICLCompetence) and result.n_prompts == 4
    assert 0 <= result.accepted_prefix_length.value <= result.generated_length_mean <= 8
    assert 1 <= result.prompt_sequences_mean <= 10  # prompts trimmed to the context of 64
    write_json(tmp_path / "icl.json", result)
    back = read_json(tmp_path / "icl.json", ICLCompetence)
    assert back.examples == result.examples
    assert np.isclose(back.accepted_prefix_length.value, result.accepted_prefix_length.value)
