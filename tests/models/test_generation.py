"""The one decode loop: each path against an independent step-by-step computation, `generate`
itself, the top-k distribution, stop tokens and seeds."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import chisquare

from qphi.models.generation import Sampling, generate, sample_top_k

from .hosts import tiny_model

PROMPTS = [[5, 9, 3], [7, 2, 8, 8, 4, 6, 1], [5, 9, 3], [40, 41]]


def greedy_reference(forward, prompt: list[int], steps: int, allowed: list[int], stop: int) -> list[int]:
    """Greedy decoding of one prompt by full forward passes: the allowed token with the largest logit."""
    sequence, out = list(prompt), []
    for _ in range(steps):
        with torch.no_grad():
            logits = forward(torch.tensor([sequence]))[0, -1]
        token = allowed[int(logits[allowed].argmax())]
        out.append(token)
        sequence.append(token)
        if token == stop:
            break
    return out


@pytest.mark.parametrize("architecture", ["transformer", "lstm"])
@pytest.mark.parametrize("bottleneck", [True, False])
def test_greedy_decoding_follows_the_model_through_or_around_the_bottleneck(architecture, bottleneck):
    """Batched, padded decoding (KV cache for the transformer, recomputation for the LSTM) gives
    each prompt the tokens that full forward passes of it alone give: the whole PHi model's
    logits (prior and all) with the bottleneck, the base model's without."""
    model = tiny_model(architecture, phi_after=1, bottleneck="gumbel")
    allowed = list(range(30, 60))
    steps, stop = 8, 45
    sampling = Sampling(max_new_tokens=steps, top_k=1, allowed=tuple(allowed), stop=(stop,))
    out = generate(model, PROMPTS, 0, sampling, bottleneck=bottleneck, seed=0)

    def forward(ids: torch.Tensor) -> torch.Tensor:
        return model(input_ids=ids).logits if bottleneck else model.base(input_ids=ids).logits

    for row, prompt in zip(out.tolist(), PROMPTS, strict=True):
        expected = greedy_reference(forward, prompt, steps, allowed, stop)
        assert row[: len(expected)] == expected
        assert all(t == 0 for t in row[len(expected) :])  # padding after the stop token
    assert torch.equal(out[0], out[2])  # a repeated prompt shares its pass and continues alike


def test_greedy_decoding_equals_plain_generate():
    """With the bottleneck bypassed, top_k = 1 continuations (the prompts' keys and values shared
    between rows) equal greedy `generate` on every row's full prompt, left-padded."""
    model = tiny_model("transformer", phi_after=1)
    out = generate(model, PROMPTS, 0, Sampling(max_new_tokens=6, top_k=1), bottleneck=False, seed=0)
    width = max(map(len, PROMPTS))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in PROMPTS])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in PROMPTS])
    plain = model.base.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=6, pad_token_id=0)
    assert torch.equal(out, plain[:, width:])


def test_rows_pad_after_their_stop_token_and_decoding_ends_when_all_have():
    model = tiny_model("transformer", phi_after=1)
    prompts = [[5, 9, 3], [7, 2, 8]]
    free = generate(model, prompts, 0, Sampling(max_new_tokens=8, top_k=1), bottleneck=False, seed=0)
    stop = int(free[0, 2])  # the first row's third greedy token
    ended = generate(model, prompts, 0, Sampling(max_new_tokens=8, top_k=1, stop=(stop,)), bottleneck=False, seed=0)
    first_stop = [int((row == stop).nonzero()[0]) if (row == stop).any() else None for row in free]
    assert ended.shape[1] == (8 if None in first_stop else max(first_stop) + 1)
    for row, end in enumerate(first_stop):
        cut = ended.shape[1] if end is None else end + 1
        assert torch.equal(ended[row, :cut], free[row, :cut])
        assert (ended[row, cut:] == 0).all()


def test_samples_depend_on_the_seed_only_and_the_mode_is_restored():
    model = tiny_model("lstm", phi_after=0).train()
    sampling = Sampling(max_new_tokens=12, temperature=1.5)
    torch.manual_seed(1)
    first = generate(model, PROMPTS, 0, sampling, bottleneck=True, seed=7)
    torch.manual_seed(2)
    again = generate(model, PROMPTS, 0, sampling, bottleneck=True, seed=7)
    other = generate(model, PROMPTS, 0, sampling, bottleneck=True, seed=8)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert model.training


def test_top_k_sampling_follows_the_renormalised_top_k_softmax():
    """Frequencies of `sample_top_k` against softmax(logits / T) over the k largest logits,
    computed independently with `torch.distributions` (chi-square test); nothing outside the top k."""
    torch.manual_seed(0)
    logits = torch.randn(40) * 2
    temperature, k, draws = 0.6, 5, 40_000
    tokens = sample_top_k(logits.expand(draws, -1), temperature, k, torch.Generator().manual_seed(0)).squeeze(1)
    top = logits.topk(k).indices
    assert torch.isin(tokens, top).all()
    expected = torch.distributions.Categorical(logits=logits[top] / temperature).probs * draws
    observed = torch.stack([(tokens == t).sum() for t in top]).double()
    assert chisquare(observed.numpy(), expected.double().numpy()).pvalue > 1e-3
    everything = sample_top_k(logits.expand(draws, -1), 1.0, None, torch.Generator().manual_seed(1)).squeeze(1)
    counts = torch.bincount(everything, minlength=40).double()
    expected = torch.distributions.Categorical(logits=logits.double()).probs * draws
    seen = expected > 5  # chi-square needs populated cells; the rest pooled
    observed = torch.cat([counts[seen], counts[~seen].sum(0, keepdim=True)])
    expected = torch.cat([expected[seen], expected[~seen].sum(0, keepdim=True)])
    assert chisquare(observed.numpy(), expected.numpy()).pvalue > 1e-3
