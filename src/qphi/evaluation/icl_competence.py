"""In-context-learning competence (SPEC §5.4).

Prompt the model with sequences of a fresh automaton, let it write one more sequence (letters
a–r only, ending at a space), and measure the longest prefix the automaton accepts when run as
an NFA from any state. A model that inferred the automaton in context writes long accepted
prefixes; as a reference, the same lengths of letters drawn uniformly from the automaton's
vocabulary are scored too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from qphi.evaluation.stats import Estimate, bootstrap
from qphi.models import PHiModel
from qphi.models.generation import Sampling, generate
from qphi.seeding import mix_seed
from qphi.tasks import ALPHABET, CharTokenizer, LevelConfig, random_pfa


@dataclass(frozen=True)
class ICLExample:
    prompt_tail: str  # the prompt's last 60 characters
    generated: str


@dataclass(frozen=True)
class ICLCompetence:
    """Accepted-prefix lengths (letters) of the generated sequences, with bootstrap CIs.

    fully_accepted_fraction: sequences the automaton accepts to their end; an empty sequence
    (the model ended at once) is not one of them."""

    n_prompts: int
    prompt_sequences_mean: float
    accepted_prefix_length: Estimate
    generated_length_mean: float
    fully_accepted_fraction: float
    uniform_baseline_accepted_prefix_length: Estimate
    examples: list[ICLExample]


def generate_sequences(
    model: PHiModel,
    tokenizer: CharTokenizer,
    prompts: list[str],
    generator: torch.Generator,
    max_letters: int = 60,
) -> list[str]:
    """Sample one sequence per prompt: up to `max_letters` letters a–r, ended by a space (not
    included). The whole model runs, its bottleneck included (it is part of the model)."""
    space = tokenizer.encode(" ")[0]
    sampling = Sampling(max_new_tokens=max_letters + 1, allowed=tuple(tokenizer.encode(ALPHABET + " ")), stop=(space,))
    encoded = [[tokenizer.bos_id, *tokenizer.encode(p)] for p in prompts]
    seed = int(torch.randint(2**62, (), generator=generator))
    rows = generate(model, encoded, tokenizer.pad_id, sampling, bottleneck=True, seed=seed).tolist()
    return [tokenizer.decode(row[: row.index(space)] if space in row else row[:max_letters]) for row in rows]


def icl_competence(
    model: PHiModel,
    tokenizer: CharTokenizer,
    level_config: LevelConfig,
    context_length: int,
    num_prompts: int = 64,
    prompt_sequences: int = 10,
    max_letters: int = 60,
    seed: int = 0,
    batch_size: int = 32,
    resamples: int = 1000,
) -> ICLCompetence:
    """Mean accepted-prefix length with a bootstrap CI, sampled on the model's device. Prompts hold
    `prompt_sequences` sequences, minus whole sequences from the front where prompt and
    generation would exceed `context_length` (the length the model was trained on)."""
    generator = torch.Generator().manual_seed(mix_seed(seed, 5))
    low, high = level_config.sequence_length
    automata, prompts, shown = [], [], []
    for _ in range(num_prompts):
        pfa = random_pfa(generator, **level_config.automaton_ranges)
        lengths = torch.randint(low, high + 1, (prompt_sequences,), generator=generator).tolist()
        sequences = pfa.sample_sequences(lengths, generator)
        while len(sequences) > 1 and len(" ".join(sequences)) + 2 + max_letters > context_length:
            sequences = sequences[1:]
        automata.append(pfa)
        shown.append(len(sequences))
        prompts.append(" ".join(sequences) + " ")
    generated = []
    for first in range(0, num_prompts, batch_size):
        generated += generate_sequences(model, tokenizer, prompts[first : first + batch_size], generator, max_letters)
    pairs = list(zip(automata, generated, strict=True))
    accepted = np.array([pfa.accepted_prefix_length(s) for pfa, s in pairs], float)
    lengths = np.array([len(s) for s in generated], float)
    baseline = np.array(
        [pfa.accepted_prefix_length(_uniform_letters(pfa.vocabulary, len(s), generator)) for pfa, s in pairs], float
    )
    return ICLCompetence(
        n_prompts=num_prompts,
        prompt_sequences_mean=float(np.mean(shown)),
        accepted_prefix_length=bootstrap(np.mean, accepted, resamples=resamples, seed=seed),
        generated_length_mean=float(lengths.mean()),
        fully_accepted_fraction=float(np.mean((accepted == lengths) & (lengths > 0))),
        uniform_baseline_accepted_prefix_length=bootstrap(np.mean, baseline, resamples=resamples, seed=seed),
        examples=[ICLExample(p[-60:], g) for p, g in list(zip(prompts, generated, strict=True))[:5]],
    )


def _uniform_letters(vocabulary: str, length: int, generator: torch.Generator) -> str:
    picks = torch.randint(0, len(vocabulary), (length,), generator=generator).tolist()
    return "".join(vocabulary[i] for i in picks)
