"""The reasoning-correctness experiment: batched sampling, caches that resume, the statistics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from qphi.errors import QPhiError
from qphi.evaluation.correctness import (
    GenerationSettings,
    Rationales,
    RationaleScores,
    analyse,
    sample_rationales,
    score_rationales,
)
from qphi.evaluation.scoring import Chat, score_texts
from qphi.evaluation.stats import partial_correlation
from qphi.experiments import correctness
from qphi.experiments.correctness import CorrectnessResult, generations, scores
from qphi.io import read_json, write_json
from qphi.models import PHiModel
from qphi.phi import PHiConfig
from qphi.reports.correctness import correctness_table, plot_correctness
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
    assert [r.id for r in together] == [p.id for p in problems]
    for r, p in zip(together, problems, strict=True):
        assert len(r.rationales) == 2 and r.correct == [p.is_correct(t) for t in r.rationales]
        assert r.correct_flexible == [p.is_correct(t, flexible=True) for t in r.rationales]


def test_generation_cache_resumes_and_survives_a_torn_line(model, tokenizer, data, tmp_path, monkeypatch):
    problems = load_gsm8k(data / "gsm8k")[:4]
    settings = GenerationSettings(samples=2, max_new_tokens=4)
    cache = tmp_path / "generations.jsonl"
    first = generations(model, tokenizer, problems[:2], settings, cache)
    with open(cache, "a") as f:
        f.write('{"id": "torn')  # a kill mid-write
    calls = []
    real = correctness.sample_rationales
    monkeypatch.setattr(
        correctness, "sample_rationales", lambda m, t, ps, *a, **k: calls.append(len(ps)) or real(m, t, ps, *a, **k)
    )
    records = generations(model, tokenizer, problems, settings, cache, batch_size=2)
    assert sum(calls) == 2 and records[:2] == first
    assert [r.id for r in records] == [p.id for p in problems]
    lines = cache.read_text().splitlines()
    assert len(lines) == 4 and [json.loads(line)["id"] for line in lines] == [p.id for p in problems]
    written = cache.read_bytes()
    with pytest.raises(QPhiError, match="other settings"):
        generations(model, tokenizer, problems, GenerationSettings(samples=3, max_new_tokens=4), cache)
    assert cache.read_bytes() == written  # a refused run changes nothing


def test_scores_are_mean_phi_and_loss_over_the_rationale(model, tokenizer, data, tmp_path):
    problems = load_math(data / "math")[:2]
    sampled = [
        Rationales(p.id, "math", p.level, p.answer, ["It is $\\boxed{1}$.", " "], [True, False], GenerationSettings())
        for p in problems
    ]
    scored = scores(model, tokenizer, problems, sampled, tmp_path / "scores.jsonl")
    (expected,) = score_texts(model, tokenizer, [Chat(problems[0].prompt, "It is $\\boxed{1}$.")])
    assert scored[0].phi[0] == pytest.approx(expected.summary().phi_mean, rel=1e-5)
    assert scored[0].nll[0] == pytest.approx(expected.summary().nll_mean, rel=1e-5)
    assert scored[0].phi[1] is None and scored[0].nll[1] is None  # an empty rationale is not scored
    assert score_rationales(model, tokenizer, problems[1], sampled[1]) == scored[1]
    assert scores(model, tokenizer, problems, sampled, tmp_path / "scores.jsonl") == scored  # from the cache


def _records(rng, n_questions=60, n=4, level=None, signal=0.0) -> list[RationaleScores]:
    out = []
    for q in range(n_questions):
        correct = rng.random(n) < 0.5
        nll = rng.normal(size=n)
        phi = nll + signal * correct + rng.normal(size=n)
        flexible = correct | (rng.random(n) < 0.2)  # math-verify accepts what the strict check does, and more
        out.append(
            RationaleScores(f"{level}-{q}", level, correct.tolist(), phi.tolist(), nll.tolist(), flexible.tolist())
        )
    return out


def test_analysis_against_a_direct_computation():
    rng = np.random.default_rng(0)
    records = _records(rng, level=3, signal=1.0) + _records(rng, level=5)
    result = analyse(records, resamples=200)
    assert list(result) == ["3", "5", "all"]
    level = [r for r in records if r.level == 3]
    mixed = [r for r in level if 0 < sum(r.correct) < len(r.correct)]
    pick = np.mean([r.correct[int(np.argmax(r.phi))] for r in mixed])
    low = np.mean([r.correct[int(np.argmin(r.nll))] for r in mixed])
    chance = np.mean([np.mean(r.correct) for r in mixed])
    three = result["3"]
    assert three.n_questions == len(level) and three.n_mixed == len(mixed)
    assert three.accuracy == pytest.approx(np.mean([r.correct for r in level]))
    assert three.accuracy_flexible == pytest.approx(np.mean([r.correct_flexible for r in level]))
    assert three.highest_phi.value == pytest.approx(pick)
    assert three.lowest_nll.value == pytest.approx(low)
    assert three.random.value == pytest.approx(chance)
    flat = lambda key: np.concatenate([np.asarray(getattr(r, key), dtype=float) for r in level])  # noqa: E731
    assert three.partial_correlation.value == pytest.approx(
        partial_correlation(flat("phi"), flat("correct"), flat("nll"))
    )
    # the correlation resamples questions (clusters of rationales), the picks questions one by one
    assert (three.partial_correlation.n, three.partial_correlation.clusters) == (4 * len(level), len(level))
    assert three.highest_phi.clusters is None and three.highest_phi.n == len(mixed)
    # the planted signal shows, the null level does not
    assert three.highest_phi.low > three.random.value
    assert three.partial_correlation.low > 0
    assert result["5"].partial_correlation.low < 0 < result["5"].partial_correlation.high


def test_unscored_rationales_and_levels_without_mixed_questions():
    scored = [
        RationaleScores("a", 1, [True, False, True], [0.5, None, 0.7], [1.0, None, 1.2]),
        RationaleScores("b", 1, [False, False, False], [0.1, 0.2, 0.3], [2.0, 2.1, 2.2]),
        RationaleScores("c", 2, [True, False, True], [None, None, None], [None, None, None]),
    ]
    result = analyse(scored, resamples=20)
    assert result["1"].n_mixed == 0 and result["1"].accuracy == pytest.approx(2 / 5)  # the scored ones
    assert result["1"].highest_phi is None and result["1"].random is None
    correlation = result["1"].partial_correlation  # over the 5 scored rationales of both questions
    assert (correlation.n, correlation.clusters) == (5, 2) and correlation.nonfinite > 0
    assert np.isnan(result["2"].accuracy)  # nothing scored
    assert result["1"].accuracy_flexible is None  # caches of older versions have no flexible marks


def test_report_files_and_table(tmp_path):
    rng = np.random.default_rng(1)
    # level 2: one question solved every time, one never — a resample of the same one twice has no correlation
    split = [RationaleScores(q, 2, [ok] * 4, rng.normal(size=4).tolist(), rng.normal(size=4).tolist())
             for q, ok in (("right", True), ("wrong", False))]  # fmt: skip
    levels = analyse(_records(rng, level=1) + split, resamples=50)
    result = CorrectnessResult("run", 3, "tiny", 1, "math", "test", 62, GenerationSettings(), levels)
    write_json(tmp_path / "correctness.json", result)
    assert read_json(tmp_path / "correctness.json", CorrectnessResult) == result
    assert (
        json.loads((tmp_path / "correctness.json").read_text())["levels"]["1"]["partial_correlation"]["clusters"] == 60
    )
    plot_correctness(tmp_path / "correctness.png", levels, title="test")
    assert (tmp_path / "correctness.png").stat().st_size > 0
    table = correctness_table(levels).splitlines()
    assert [line.split()[0] for line in table[1:4]] == ["1", "2", "all"]
    assert levels["2"].partial_correlation.nonfinite > 0
    assert f"level 2, partial correlation: {levels['2'].partial_correlation.nonfinite} bootstrap resamples" in table[4]


@pytest.mark.slow
def test_smollm2_on_gsm8k(smollm2, shared_data, tmp_path):
    """The real model end to end on a few GSM-8k questions with short generations."""
    base, tokenizer = smollm2
    config = PHiConfig(d_model=base.config.hidden_size, bottleneck="continuous", prior={"n_heads": 9})
    model = PHiModel(base, config, 20, freeze_base=True).eval()
    problems = load_gsm8k(shared_data / "gsm8k")[:2]
    settings = GenerationSettings(samples=2, max_new_tokens=48)
    sampled = generations(model, tokenizer, problems, settings, tmp_path / "g.jsonl", batch_size=4)
    assert all(any(r.strip() for r in g.rationales) for g in sampled)
    scored = scores(model, tokenizer, problems, sampled, tmp_path / "s.jsonl")
    assert all(any(v is not None for v in s.phi) for s in scored)
    assert "all" in analyse(scored, resamples=20)
    assert torch.is_grad_enabled()
