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

    The whole model runs, its bottleneck included (it is part of the model). Hugging Face
    models generate with a KV cache (left-padded prompts; the bottleneck works token by token
    in evaluation); other models (the LSTM) recompute right-padded rows at every step.
    """
    allowed = tokenizer.encode(ALPHABET + " ")
    space = tokenizer.encode(" ")[0]
    encoded = [[tokenizer.bos_id, *tokenizer.encode(p)] for p in prompts]
    if hasattr(model.base, "generate"):
        texts = _generate_cached(model, tokenizer, encoded, allowed, space, generator, max_letters, device)
    else:
        texts = _generate_recomputing(model, tokenizer, encoded, allowed, space, generator, max_letters, device)
    return [t.split(" ")[0] for t in texts]


def _generate_cached(model, tokenizer, encoded, allowed, space, generator, max_letters, device) -> list[str]:
    width = max(map(len, encoded))
    ids = torch.full((len(encoded), width), tokenizer.pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, e in enumerate(encoded):
        ids[i, width - len(e) :] = torch.tensor(e)
        mask[i, width - len(e) :] = 1
    with torch.random.fork_rng(devices=[]), model.generating():
        torch.manual_seed(int(torch.randint(2**62, (), generator=generator)))
        out = model.base.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=max_letters + 1,
            do_sample=True,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            prefix_allowed_tokens_fn=lambda batch_id, sent: allowed,
            eos_token_id=space,
            pad_token_id=tokenizer.pad_id,
        )
    return [tokenizer.decode(row.tolist()) for row in out[:, width:].cpu()]


def _generate_recomputing(model, tokenizer, encoded, allowed, space, generator, max_letters, device) -> list[str]:
    """Right-padded rows keep positions 0.. and never read padding before a real token."""
    allowed_ids = torch.tensor(allowed, device=device)
    lengths = torch.tensor([len(e) for e in encoded], device=device)
    ids = torch.full((len(encoded), int(lengths.max()) + max_letters), tokenizer.pad_id, device=device)
    for i, e in enumerate(encoded):
        ids[i, : len(e)] = torch.tensor(e, device=device)
    done = torch.zeros(len(encoded), dtype=torch.bool, device=device)
    start = lengths.clone()
    rows = torch.arange(len(encoded), device=device)
    for _ in range(max_letters):
        width = int(lengths.max())
        mask = torch.arange(width, device=device) < lengths.unsqueeze(1)
        logits = model(input_ids=ids[:, :width], padding_mask=mask).logits[rows, lengths - 1][:, allowed_ids]
        probs = torch.softmax(logits.float(), -1).cpu()
        choice = allowed_ids[torch.multinomial(probs, 1, generator=generator).squeeze(1).to(device)]
        ids[rows[~done], lengths[~done]] = choice[~done]
        lengths = torch.where(done, lengths, lengths + 1)
        done |= choice == space
        if bool(done.all()):
            break
    return [tokenizer.decode(ids[i, start[i] : lengths[i]].tolist()) for i in range(len(encoded))]


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
    device: torch.device | str = "cpu",
    resamples: int = 1000,
) -> dict[str, Any]:
    """Mean accepted-prefix length with a bootstrap CI. Prompts hold `prompt_sequences` sequences,
    minus whole sequences from the front where prompt and generation would exceed
    `context_length` (the length the model was trained on)."""
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
    was_training = model.training
    model.eval()
    try:
        generated = []
        for first in range(0, num_prompts, batch_size):
            batch = prompts[first : first + batch_size]
            generated += generate_sequences(model, tokenizer, batch, generator, max_letters, device)
    finally:
        model.train(was_training)
    pairs = list(zip(automata, generated, strict=True))
    accepted = np.array([pfa.accepted_prefix_length(s) for pfa, s in pairs], float)
    lengths = np.array([len(s) for s in generated], float)
    baseline = np.array(
        [pfa.accepted_prefix_length(_uniform_letters(pfa.vocabulary, len(s), generator)) for pfa, s in pairs], float
    )
    return {
        "n_prompts": num_prompts,
        "prompt_sequences_mean": float(np.mean(shown)),
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
