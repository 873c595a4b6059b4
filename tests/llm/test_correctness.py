"""The reasoning-correctness experiment: batched sampling, caches that resume, the statistics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from qphi.evaluation import correctness
from qphi.evaluation.correctness import (
    GenerationSettings,
    analyse,
    generate,
    sample_continuations,
    sample_rationales,
    sample_top_k,
    score,
)
from qphi.evaluation.stats import partial_correlation
from qphi.models import PHiModel
from qphi.phi import PHiConfig
from qphi.tasks.reasoning import load_gsm8k, load_math

from .conftest import make_llama


@pytest.fixture(scope="module")
def model(tokenizer) -> PHiModel:
    config = PHiConfig(d_model=32, bottleneck="continuous", prior={"n_heads": 4})
    return PHiModel(make_llama(len(tokenizer), seed=1), config, 1, freeze_base=True).eval()


def test_left_padded_batches_generate_as_alone(model, tokenizer, data):
    """top_k = 1 makes sampling greedy: a batch of prompts of different lengths must give each
    prompt's own continuation (so the left padding and its attention mask are right)."""
    problems = load_gsm8k(data / "gsm8k")[:3]
    problems[1] = problems[1].__class__(**{**problems[1].__dict__, "question": "a much longer question " * 4})
    settings = GenerationSettings(samples=2, max_new_tokens=6, top_k=1)
    together = sample_rationales(model, tokenizer, problems, settings, batch_size=6)
    alone = [sample_rationales(model, tokenizer, [p], settings, batch_size=1)[0] for p in problems]
    assert together == alone
    assert all(len(r) == 2 for r in together)


def test_greedy_sampling_equals_plain_generate(model, tokenizer):
    """top_k = 1 continuations, with the prompts' keys and values shared between rows, equal
    greedy `generate` run on every row's full prompt (left padding, repeated and distinct prompts)."""
    short, long = [5, 9, 3], [7, 2, 8, 8, 4, 6, 1]
    prompts = [short, short, long, short, long]
    shared = sample_continuations(model.base, prompts, 0, max_new_tokens=6, top_k=1)
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    plain = model.base.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=6, pad_token_id=0)
    assert torch.equal(shared, plain[:, width:])
    assert torch.equal(shared[0], shared[1]) and torch.equal(shared[2], shared[4])


def test_top_k_sampling_follows_the_renormalised_top_k_softmax():
    """Frequencies of `sample_top_k` against softmax(logits / T) over the k largest logits,
    computed independently with `torch.distributions` (chi-square test); nothing outside the top k."""
    torch.manual_seed(0)
    logits = torch.randn(40) * 2
    temperature, k, draws = 0.6, 5, 40_000
    tokens = sample_top_k(logits.expand(draws, -1), temperature, k).squeeze(1)
    top = logits.topk(k).indices
    assert torch.isin(tokens, top).all()
    expected = torch.distributions.Categorical(logits=logits[top] / temperature).probs * draws
    observed = torch.stack([(tokens == t).sum() for t in top]).double()
    assert chisquare(observed.numpy(), expected.double().numpy()).pvalue > 1e-3


def test_rows_pad_after_their_end_token_and_sampling_stops_when_all_have(model):
    prompts = [[5, 9, 3], [7, 2, 8]]
    free = sample_continuations(model.base, prompts, 0, max_new_tokens=8, top_k=1)
    eos = int(free[0, 2])  # the first row's third greedy token
    ended = sample_continuations(model.base, prompts, 0, max_new_tokens=8, top_k=1, eos_token_id=eos)
    first_end = [int((row == eos).nonzero()[0]) if (row == eos).any() else None for row in free]
    assert ended.shape[1] == (8 if None in first_end else max(first_end) + 1)
    for row, end in zip(range(2), first_end, strict=True):
        stop = ended.shape[1] if end is None else end + 1
        assert torch.equal(ended[row, :stop], free[row, :stop])
        assert (ended[row, stop:] == 0).all()


def test_generation_cache_resumes_and_survives_a_torn_line(model, tokenizer, data, tmp_path, monkeypatch):
    problems = load_gsm8k(data / "gsm8k")[:4]
    settings = GenerationSettings(samples=2, max_new_tokens=4)
    cache = tmp_path / "generations.jsonl"
    first = generate(model, tokenizer, problems[:2], settings, cache)
    with open(cache, "a") as f:
        f.write('{"id": "torn')  # a kill mid-write
    calls = []
    real = correctness.sample_rationales
    monkeypatch.setattr(
        correctness, "sample_rationales", lambda m, t, ps, *a, **k: calls.append(len(ps)) or real(m, t, ps, *a, **k)
    )
    records = generate(model, tokenizer, problems, settings, cache, batch_size=2)
    assert sum(calls) == 2 and records[:2] == first
    assert [r["id"] for r in records] == [p.id for p in problems]
    assert all(len(r["rationales"]) == 2 and len(r["correct"]) == 2 for r in records)
    assert len(cache.read_text().splitlines()) == 4
    with pytest.raises(Exception, match="other settings"):
        generate(model, tokenizer, problems, GenerationSettings(samples=3, max_new_tokens=4), cache)


def test_scores_are_mean_phi_and_loss_over_the_rationale(model, tokenizer, data, tmp_path):
    from qphi.evaluation.scoring import Chat, score_texts

    problems = load_math(data / "math")[:2]
    generations = [
        {"id": p.id, "level": p.level, "correct": [True, False], "rationales": ["It is $\\boxed{1}$.", " "]}
        for p in problems
    ]
    scored = score(model, tokenizer, problems, generations, tmp_path / "scores.jsonl")
    (expected,) = score_texts(model, tokenizer, [Chat(problems[0].prompt, "It is $\\boxed{1}$.")])
    assert scored[0]["phi"][0] == pytest.approx(expected.summary()["phi_mean"], rel=1e-5)
    assert scored[0]["nll"][0] == pytest.approx(expected.summary()["nll_mean"], rel=1e-5)
    assert np.isnan(scored[0]["phi"][1])  # an empty rationale is not scored
    again = score(model, tokenizer, problems, generations, tmp_path / "scores.jsonl")
    assert json.dumps(again) == json.dumps(scored)


def _records(rng, n_questions=60, n=4, level=None, signal=0.0):
    out = []
    for q in range(n_questions):
        correct = rng.random(n) < 0.5
        nll = rng.normal(size=n)
        phi = nll + signal * correct + rng.normal(size=n)
        out.append(
            {"id": str(q), "level": level, "correct": correct.tolist(), "phi": phi.tolist(), "nll": nll.tolist()}
        )
    return out


def test_analysis_against_a_direct_computation():
    rng = np.random.default_rng(0)
    records = _records(rng, level=3, signal=1.0) + _records(rng, level=5)
    result = analyse(records, resamples=200)["levels"]
    assert set(result) == {"3", "5", "all"}
    level = [r for r in records if r["level"] == 3]
    mixed = [r for r in level if 0 < sum(r["correct"]) < len(r["correct"])]
    pick = np.mean([r["correct"][int(np.argmax(r["phi"]))] for r in mixed])
    low = np.mean([r["correct"][int(np.argmin(r["nll"]))] for r in mixed])
    chance = np.mean([np.mean(r["correct"]) for r in mixed])
    assert result["3"]["n_mixed"] == len(mixed)
    assert result["3"]["highest_phi"]["value"] == pytest.approx(pick)
    assert result["3"]["lowest_nll"]["value"] == pytest.approx(low)
    assert result["3"]["random"]["value"] == pytest.approx(chance)
    flat = lambda key: np.concatenate([np.asarray(r[key], dtype=float) for r in level])  # noqa: E731
    assert result["3"]["partial_correlation"]["value"] == pytest.approx(
        partial_correlation(flat("phi"), flat("correct"), flat("nll"))
    )
    # the planted signal shows, the null level does not
    assert result["3"]["highest_phi"]["low"] > result["3"]["random"]["value"]
    assert result["3"]["partial_correlation"]["low"] > 0
    assert result["5"]["partial_correlation"]["low"] < 0 < result["5"]["partial_correlation"]["high"]


def test_report_files(tmp_path):
    rng = np.random.default_rng(1)
    analysis = analyse(_records(rng, level=1) + _records(rng, level=2), resamples=50)
    correctness.write_report(tmp_path, analysis, {"dataset": "math"}, title="test")
    assert (tmp_path / "correctness.png").stat().st_size > 0
    assert json.loads((tmp_path / "correctness.json").read_text())["dataset"] == "math"


@pytest.mark.slow
def test_smollm2_on_gsm8k(smollm2, shared_data, tmp_path):
    """The real model end to end on a few GSM-8k questions with short generations."""
    base, tokenizer = smollm2
    config = PHiConfig(d_model=base.config.hidden_size, bottleneck="continuous", prior={"n_heads": 9})
    model = PHiModel(base, config, 20, freeze_base=True).eval()
    problems = load_gsm8k(shared_data / "gsm8k")[:2]
    settings = GenerationSettings(samples=2, max_new_tokens=48)
    generations = generate(model, tokenizer, problems, settings, tmp_path / "g.jsonl", batch_size=4)
    assert all(any(r.strip() for r in g["rationales"]) for g in generations)
    scored = score(model, tokenizer, problems, generations, tmp_path / "s.jsonl")
    assert all(np.isfinite(s["phi"]).any() for s in scored)
    assert "all" in analyse(scored, resamples=20)["levels"]
    assert torch.is_grad_enabled()
