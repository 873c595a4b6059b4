"""In-context-learning competence (SPEC §5.4).

Prompt the model with sequences of a fresh automaton, let it write one more sequence (letters
a–r only, ending at a space), and measure the longest prefix the automaton accepts when run as
an NFA from any state. A model that inferred the automaton in context writes long accepted
prefixes; as a reference, the same lengths of letters drawn uniformly from the automaton's
vocabulary are scored too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from qphi.evaluation.stats import bootstrap
from qphi.models import PHiModel
from qphi.seeding import mix_seed
from qphi.tasks import ALPHABET, CharTokenizer, LevelConfig, random_pfa


@torch.no_grad()
def generate_sequences(
    model: PHiModel,
    tokenizer: CharTokenizer,
    prompts: list[str],
    generator: torch.Generator,
    max_letters: int = 60,
    device: torch.device | str = "cpu",
) -> list[str]:
    """Sample one sequence per prompt, restricted to the letters and the space that ends it.

    Rows are right-padded, so every prompt keeps positions 0.. and no architecture (the LSTM
    included) ever reads padding before a real token; each step reads a row's logits at its
    current end. The whole model runs, PHi layer included — it is part of the model.
    """
    allowed = torch.tensor(tokenizer.encode(ALPHABET + " "), device=device)
    space = tokenizer.encode(" ")[0]
    encoded = [[tokenizer.bos_id, *tokenizer.encode(p)] for p in prompts]
    lengths = torch.tensor([len(e) for e in encoded], device=device)
    ids = torch.full((len(prompts), int(lengths.max()) + max_letters), tokenizer.pad_id, device=device)
    for i, e in enumerate(encoded):
        ids[i, : len(e)] = torch.tensor(e, device=device)
    done = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    start = lengths.clone()
    rows = torch.arange(len(prompts), device=device)
    for _ in range(max_letters):
        width = int(lengths.max())
        mask = torch.arange(width, device=device) < lengths.unsqueeze(1)
        logits = model(input_ids=ids[:, :width], padding_mask=mask).logits[rows, lengths - 1][:, allowed]
        probs = torch.softmax(logits.float(), -1).cpu()
        choice = allowed[torch.multinomial(probs, 1, generator=generator).squeeze(1).to(device)]
        ids[rows[~done], lengths[~done]] = choice[~done]
        lengths = torch.where(done, lengths, lengths + 1)
        done |= choice == space
        if bool(done.all()):
            break
    out = []
    for i in range(len(prompts)):
        text = tokenizer.decode(ids[i, start[i] : lengths[i]].tolist())
        out.append(text.split(" ")[0])
    return out


def icl_competence(
    model: PHiModel,
    tokenizer: CharTokenizer,
    level_config: LevelConfig,
    num_prompts: int = 64,
    prompt_sequences: int = 10,
    seed: int = 0,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    resamples: int = 1000,
) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(mix_seed(seed, 5))
    automata, prompts = [], []
    for _ in range(num_prompts):
        pfa = random_pfa(generator, **level_config.automaton_ranges)
        lengths = torch.randint(
            level_config.sequence_length[0],
            level_config.sequence_length[1] + 1,
            (prompt_sequences,),
            generator=generator,
        ).tolist()
        automata.append(pfa)
        prompts.append(" ".join(pfa.sample_sequences(lengths, generator)) + " ")
    was_training = model.training
    model.eval()
    try:
        generated = []
        for first in range(0, num_prompts, batch_size):
            generated += generate_sequences(
                model, tokenizer, prompts[first : first + batch_size], generator, device=device
            )
    finally:
        model.train(was_training)
    accepted = np.array([pfa.accepted_prefix_length(s) for pfa, s in zip(automata, generated, strict=True)], float)
    lengths = np.array([len(s) for s in generated], float)
    baseline = np.array(
        [
            pfa.accepted_prefix_length(_uniform_letters(pfa.vocabulary, len(s), generator))
            for pfa, s in zip(automata, generated, strict=True)
        ],
        float,
    )
    return {
        "n_prompts": num_prompts,
        "prompt_sequences": prompt_sequences,
        "accepted_prefix_length": bootstrap(np.mean, accepted, resamples=resamples, seed=seed).to_dict(),
        "generated_length_mean": float(lengths.mean()),
        "fully_accepted_fraction": float(np.mean(accepted == lengths)),
        "uniform_baseline_accepted_prefix_length": bootstrap(
            np.mean, baseline, resamples=resamples, seed=seed
        ).to_dict(),
        "examples": [
            {"prompt_tail": p[-60:], "generated": g} for p, g in list(zip(prompts, generated, strict=True))[:5]
        ],
    }


def _uniform_letters(vocabulary: str, length: int, generator: torch.Generator) -> str:
    picks = torch.randint(0, len(vocabulary), (length,), generator=generator).tolist()
    return "".join(vocabulary[i] for i in picks)
