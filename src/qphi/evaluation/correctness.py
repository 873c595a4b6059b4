"""Does PHi tell correct reasoning chains from wrong ones? (SPEC §5.6) The measurements:

1. Sample n rationales per question with the plain base model (PHi layer bypassed): batched,
   KV-cached, left-padded, temperature 0.6, top-k 300 (`qphi.models.generation`).
2. Mark each correct or not: by the paper's strict answer check, which the analysis uses, and
   flexibly (math-verify), reported beside it as `accuracy_flexible`.
3. Score each with the PHi layer: mean PHi and mean next-token loss over its tokens (the
   assistant turn after the question's chat prompt).
4. Per difficulty level: among questions with both correct and incorrect rationales, how
   often the highest-PHi rationale is correct, the same for the lowest-next-token-loss
   rationale (the baseline), and what a random pick would give; plus the partial
   correlation of PHi with correctness controlling for next-token loss over all scored
   rationales. All with bootstrap 95 % intervals over questions: the correlation resamples
   whole questions too, since a question's rationales share its difficulty and resampling
   them one by one would make the interval too narrow.

`qphi.experiments.correctness` puts these together with resumable caches and the report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from qphi.evaluation.scoring import Chat, score_texts
from qphi.evaluation.stats import Estimate, bootstrap, partial_correlation
from qphi.io import FloatOrNaN
from qphi.models import PHiModel
from qphi.models.generation import Sampling, generate
from qphi.seeding import mix_seed
from qphi.tasks.reasoning import ReasoningProblem


@dataclass(frozen=True)
class GenerationSettings:
    samples: int = 8
    max_new_tokens: int = 512
    temperature: float = 0.6
    top_k: int = 300
    seed: int = 0


@dataclass(frozen=True)
class Rationales:
    """A question's sampled rationales, each marked correct or not (strictly; and flexibly, None
    in caches of versions that did not record it)."""

    id: str
    dataset: str
    level: int | None
    answer: str | None
    rationales: list[str]
    correct: list[bool]
    settings: GenerationSettings
    correct_flexible: list[bool] | None = None


@dataclass(frozen=True)
class RationaleScores:
    """Mean PHi and mean next-token loss of each rationale of a question (nats per token;
    None for an empty rationale, which is not scored)."""

    id: str
    level: int | None
    correct: list[bool]
    phi: list[float | None]
    nll: list[float | None]
    correct_flexible: list[bool] | None = None


@dataclass(frozen=True)
class LevelAnalysis:
    """One difficulty level (or all questions). n_mixed: questions with both correct and
    incorrect scored rationales. The estimates are None where there is too little to estimate:
    the picks need two mixed questions, the correlation four scored rationales of both kinds."""

    n_questions: int
    n_mixed: int
    accuracy: FloatOrNaN  # of the scored rationales, by the strict check the analysis uses
    accuracy_flexible: FloatOrNaN | None = None  # by math-verify (None: a cache without it)
    highest_phi: Estimate | None = None  # chance that the highest-PHi rationale is correct
    lowest_nll: Estimate | None = None  # the same for the lowest next-token loss
    random: Estimate | None = None  # the chance of a correct pick at random
    partial_correlation: Estimate | None = None  # PHi with correctness given next-token loss


def prompt_ids(tokenizer, problem: ReasoningProblem) -> list[int]:
    """The question's chat prompt, ending where the assistant's turn begins."""
    messages = [{"role": "user", "content": problem.prompt}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def sample_rationales(
    model: PHiModel,
    tokenizer,
    problems: Sequence[ReasoningProblem],
    settings: GenerationSettings,
    batch_size: int = 8,
    seed: int = 0,
) -> list[Rationales]:
    """`settings.samples` rationales for each problem from the plain base model, marked correct
    or not; `batch_size` sequences are decoded together (questions share a batch when their
    samples fit)."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    sampling = Sampling(
        max_new_tokens=settings.max_new_tokens,
        temperature=settings.temperature,
        top_k=settings.top_k,
        stop=(tokenizer.eos_token_id,),
    )
    prompts = [ids for p in problems for ids in [prompt_ids(tokenizer, p)] * settings.samples]
    texts: list[str] = []
    for first in range(0, len(prompts), batch_size):
        batch = prompts[first : first + batch_size]
        out = generate(model, batch, pad_id, sampling, bottleneck=False, seed=mix_seed(seed, first))
        texts += tokenizer.batch_decode(out, skip_special_tokens=True)
    marked = []
    for i, problem in enumerate(problems):
        rationales = texts[i * settings.samples : (i + 1) * settings.samples]
        marked.append(
            Rationales(
                id=problem.id,
                dataset=problem.dataset,
                level=problem.level,
                answer=problem.answer,
                rationales=rationales,
                correct=[problem.is_correct(r) for r in rationales],
                settings=settings,
                correct_flexible=[problem.is_correct(r, flexible=True) for r in rationales],
            )
        )
    return marked


def score_rationales(
    model: PHiModel, tokenizer, problem: ReasoningProblem, sampled: Rationales, batch_size: int = 4
) -> RationaleScores:
    """Mean PHi and next-token loss over every non-empty rationale's tokens."""
    kept = [i for i, r in enumerate(sampled.rationales) if r.strip()]
    chats = [Chat(problem.prompt, sampled.rationales[i]) for i in kept]
    scores = score_texts(model, tokenizer, chats, batch_size=batch_size, base_nll=False)
    phi: list[float | None] = [None] * len(sampled.rationales)
    nll: list[float | None] = [None] * len(sampled.rationales)
    for i, s in zip(kept, scores, strict=True):
        summary = s.summary()
        phi[i], nll[i] = summary.phi_mean, summary.nll_mean
    return RationaleScores(sampled.id, sampled.level, sampled.correct, phi, nll, sampled.correct_flexible)


def _pick_rate(values: np.ndarray, correct: np.ndarray, highest: bool) -> float:
    """Fraction of questions (rows) whose highest (or lowest) scoring rationale is correct. (Q, n)."""
    filled = np.where(np.isnan(values), -np.inf if highest else np.inf, values)
    pick = filled.argmax(1) if highest else filled.argmin(1)
    return float(correct[np.arange(len(pick)), pick].mean())


def _highest_phi(phi: np.ndarray, correct: np.ndarray) -> float:
    return _pick_rate(phi, correct, highest=True)


def _lowest_nll(nll: np.ndarray, correct: np.ndarray) -> float:
    return _pick_rate(nll, correct, highest=False)


def _partial(phi: np.ndarray, correct: np.ndarray, nll: np.ndarray) -> float:
    return partial_correlation(phi, correct, nll) if 0 < correct.mean() < 1 else math.nan


def _values(records: Sequence[RationaleScores], field: str) -> np.ndarray:
    """(questions, samples) of one field, NaN where a rationale was not scored."""
    return np.array([[math.nan if v is None else v for v in getattr(r, field)] for r in records], dtype=float)


def _level(records: Sequence[RationaleScores], resamples: int, seed: int) -> LevelAnalysis:
    phi, nll = _values(records, "phi"), _values(records, "nll")  # (questions, samples)
    correct = np.array([r.correct for r in records], dtype=bool)
    valid = ~np.isnan(phi)
    mixed = (correct & valid).any(1) & (~correct & valid).any(1)
    picks = {}
    if mixed.sum() >= 2:
        c, v = correct[mixed], valid[mixed]
        picks = {
            "highest_phi": bootstrap(_highest_phi, phi[mixed], c, resamples=resamples, seed=seed),
            "lowest_nll": bootstrap(_lowest_nll, nll[mixed], c, resamples=resamples, seed=seed),
            "random": bootstrap(np.mean, (c & v).sum(1) / v.sum(1), resamples=resamples, seed=seed),
        }
    x, y, z = phi[valid], correct[valid].astype(float), nll[valid]
    flexible = None
    if valid.any() and all(r.correct_flexible is not None for r in records):
        flexible = float(np.array([r.correct_flexible for r in records], dtype=bool)[valid].mean())
    correlation = None
    if x.size >= 4 and 0 < y.mean() < 1:
        question = np.nonzero(valid)[0]  # the question of each scored rationale, in the order of x
        correlation = bootstrap(_partial, x, y, z, resamples=resamples, seed=seed, clusters=question)
    return LevelAnalysis(
        n_questions=len(records),
        n_mixed=int(mixed.sum()),
        accuracy=float(correct[valid].mean()) if valid.any() else math.nan,
        accuracy_flexible=flexible,
        partial_correlation=correlation,
        **picks,
    )


def analyse(scored: Sequence[RationaleScores], resamples: int = 1000, seed: int = 0) -> dict[str, LevelAnalysis]:
    """The analysis per MATH difficulty level (in order, by its number) and over all questions ('all')."""
    groups: dict[str, list[RationaleScores]] = {}
    for record in scored:
        if record.level is not None:
            groups.setdefault(str(record.level), []).append(record)
    groups = dict(sorted(groups.items()))
    groups["all"] = list(scored)
    return {name: _level(records, resamples, seed) for name, records in groups.items()}
