"""Does PHi tell correct reasoning chains from wrong ones? (SPEC §5.6)

1. Generate n rationales per question with the plain base model (PHi layer bypassed):
   batched sampling with a KV cache and left padding, temperature 0.6, top-k 300.
2. Mark each correct or not (the final answer against the gold answer).
3. Score each with the PHi layer: mean PHi and mean next-token loss over its tokens (the
   assistant turn after the question's chat prompt).
4. Per difficulty level: among questions with both correct and incorrect rationales, how
   often the highest-PHi rationale is correct, the same for the lowest-next-token-loss
   rationale (the baseline), and what a random pick would give; plus the partial
   correlation of PHi with correctness controlling for next-token loss over all scored
   rationales. All with bootstrap 95 % intervals over questions (rationales for the
   correlation).

Generations and scores are cached as JSONL, one line per question appended as soon as it is
done, so an interrupted run resumes where it stopped and the analysis re-runs without
regenerating.
"""

from __future__ import annotations

import json
import math
import os
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import DynamicCache

from qphi.errors import QPhiError
from qphi.evaluation.scoring import Chat, score_texts
from qphi.evaluation.stats import Estimate, bootstrap, partial_correlation
from qphi.io import append_jsonl, read_jsonl, write_json, write_text
from qphi.models import PHiModel
from qphi.reports.plots import selection_chances
from qphi.seeding import mix_seed
from qphi.tasks.reasoning import ReasoningProblem


@dataclass(frozen=True)
class GenerationSettings:
    samples: int = 8
    max_new_tokens: int = 512
    temperature: float = 0.6
    top_k: int = 300
    seed: int = 0


def _read_cache(path: Path, settings: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Records by question id; a torn last line (a kill mid-write) is dropped from the file.
    Records made with other settings are a user error (mixing them would bias the analysis)."""
    if not path.is_file():
        return {}
    records = read_jsonl(path)
    write_text(path, "".join(json.dumps(r) + "\n" for r in records))
    for r in records:
        if settings is not None and r.get("settings") != settings:
            raise QPhiError(
                f"'{path}' was made with other settings ({r.get('settings')}): use another --out folder or delete it"
            )
    return {r["id"]: r for r in records}


def _prompt_ids(tokenizer, problem: ReasoningProblem) -> list[int]:
    messages = [{"role": "user", "content": problem.prompt}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _left_padded(prompts: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """input_ids (B, T) and attention_mask (B, T) with the padding on the left (for generation)."""
    length = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), length), pad_id, dtype=torch.int64)
    mask = torch.zeros((len(prompts), length), dtype=torch.int64)
    for i, p in enumerate(prompts):
        ids[i, length - len(p) :] = torch.tensor(p)
        mask[i, length - len(p) :] = 1
    return ids, mask


def sample_top_k(logits: torch.Tensor, temperature: float, top_k: int) -> torch.Tensor:
    """One token per row of `logits` (B, V) → (B, 1), drawn from softmax(logits / temperature)
    restricted to the row's `top_k` largest logits — the distribution of `generate`'s temperature
    and top-k warpers, without a softmax, mask and multinomial over the whole vocabulary (15 % of
    a batch-8 decode step of SmolLM2 on a CPU). top_k = 1 is greedy."""
    values, indices = logits.float().topk(min(top_k, logits.shape[-1]), dim=-1)
    choice = torch.multinomial(torch.softmax(values / temperature, dim=-1), num_samples=1)
    return indices.gather(-1, choice)


@torch.no_grad()
def sample_continuations(
    base,
    prompts: Sequence[list[int]],
    pad_id: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int = 50,
    eos_token_id: int | None = None,
) -> torch.Tensor:
    """Top-k samples from `base` after the left-padded `prompts`, with a KV cache → (B, new tokens)
    ids; a row that has produced `eos_token_id` continues with `pad_id`, and sampling stops when
    every row has (or after `max_new_tokens`).

    Each distinct prompt passes through the model once and its keys and values are copied to every
    row that samples from it: a question's samples share one prompt pass instead of repeating it
    per row, which at batch 8 on a CPU cost as much as the sampling.
    """
    device = next(base.parameters()).device
    distinct = list(dict.fromkeys(map(tuple, prompts)))
    rows = torch.tensor([distinct.index(tuple(p)) for p in prompts], device=device)
    ids, mask = (t.to(device) for t in _left_padded(distinct, pad_id))
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    cache = DynamicCache(config=base.config)
    out = base(
        input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True, logits_to_keep=1
    )
    cache.reorder_cache(rows)
    logits, mask, position = out.logits[rows, -1], mask[rows], positions[rows, -1:]
    finished = torch.zeros(len(prompts), 1, dtype=torch.bool, device=device)
    tokens = []
    for step in range(max_new_tokens):
        token = sample_top_k(logits, temperature, top_k).masked_fill(finished, pad_id)
        tokens.append(token)
        if eos_token_id is not None:
            finished |= token == eos_token_id
        if step == max_new_tokens - 1 or bool(finished.all()):
            break
        mask = torch.cat([mask, mask.new_ones(len(prompts), 1)], dim=1)
        position = position + 1
        out = base(input_ids=token, attention_mask=mask, position_ids=position, cache=cache, use_cache=True)
        logits = out.logits[:, -1]
    return torch.cat(tokens, dim=1)


def sample_rationales(
    model: PHiModel,
    tokenizer,
    problems: Sequence[ReasoningProblem],
    settings: GenerationSettings,
    batch_size: int = 8,
    seed: int = 0,
) -> list[list[str]]:
    """`settings.samples` rationales for each problem from the plain base model, `batch_size`
    sequences decoded together (questions share a batch when their samples fit)."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    prompts = [ids for p in problems for ids in [_prompt_ids(tokenizer, p)] * settings.samples]
    texts: list[str] = []
    torch.manual_seed(seed)
    for first in range(0, len(prompts), batch_size):
        out = sample_continuations(
            model.base,
            prompts[first : first + batch_size],
            pad_id,
            max_new_tokens=settings.max_new_tokens,
            temperature=settings.temperature,
            top_k=settings.top_k,
            eos_token_id=tokenizer.eos_token_id,
        )
        texts += tokenizer.batch_decode(out, skip_special_tokens=True)
    return [texts[i * settings.samples : (i + 1) * settings.samples] for i in range(len(problems))]


def generate(
    model: PHiModel,
    tokenizer,
    problems: Sequence[ReasoningProblem],
    settings: GenerationSettings,
    cache: str | os.PathLike,
    batch_size: int = 8,
) -> list[dict[str, Any]]:
    """Rationales for every problem, read from / appended to the JSONL `cache`; a record holds
    id, level, answer, rationales, correct (one flag per rationale) and the settings."""
    cache = Path(cache)
    cache.parent.mkdir(parents=True, exist_ok=True)
    meta = asdict(settings)
    done = _read_cache(cache, meta)
    group = max(1, batch_size // settings.samples)  # questions per decoded batch
    todo = [p for p in problems if p.id not in done]
    progress = tqdm(total=len(todo), desc="generating", unit="question")
    for first in range(0, len(todo), group):
        chunk = todo[first : first + group]
        seed = mix_seed(settings.seed, zlib.crc32(chunk[0].id.encode("utf-8")))
        for problem, rationales in zip(
            chunk, sample_rationales(model, tokenizer, chunk, settings, batch_size, seed), strict=True
        ):
            record = {
                "id": problem.id,
                "dataset": problem.dataset,
                "level": problem.level,
                "answer": problem.answer,
                "rationales": rationales,
                "correct": [problem.is_correct(r) for r in rationales],
                "correct_flexible": [problem.is_correct(r, flexible=True) for r in rationales],
                "settings": meta,
            }
            append_jsonl(cache, record)
            done[problem.id] = record
        progress.update(len(chunk))
    progress.close()
    return [done[p.id] for p in problems]


def score(
    model: PHiModel,
    tokenizer,
    problems: Sequence[ReasoningProblem],
    generations: Sequence[dict[str, Any]],
    cache: str | os.PathLike,
    batch_size: int = 4,
) -> list[dict[str, Any]]:
    """Mean PHi and next-token loss of every rationale's tokens (NaN for an empty rationale),
    read from / appended to the JSONL `cache`."""
    cache = Path(cache)
    done = _read_cache(cache, None)
    out = []
    for problem, record in tqdm(
        list(zip(problems, generations, strict=True)), desc="scoring", unit="question", leave=False
    ):
        if record["id"] not in done:
            kept = [i for i, r in enumerate(record["rationales"]) if r.strip()]
            scores = score_texts(
                model,
                tokenizer,
                [Chat(problem.prompt, record["rationales"][i]) for i in kept],
                batch_size=batch_size,
                base_nll=False,
            )
            phi, nll = [math.nan] * len(record["rationales"]), [math.nan] * len(record["rationales"])
            for i, s in zip(kept, scores, strict=True):
                summary = s.summary()
                phi[i], nll[i] = summary["phi_mean"], summary["nll_mean"]
            entry = {
                "id": record["id"],
                "level": record["level"],
                "correct": record["correct"],
                "correct_flexible": record.get("correct_flexible"),
                "phi": phi,
                "nll": nll,
            }
            append_jsonl(cache, entry)
            done[record["id"]] = entry
        out.append(done[record["id"]])
    return out


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


def _level(records: Sequence[dict[str, Any]], resamples: int, seed: int) -> dict[str, Any]:
    phi = np.array([r["phi"] for r in records], dtype=float)  # (questions, samples)
    nll = np.array([r["nll"] for r in records], dtype=float)
    correct = np.array([r["correct"] for r in records], dtype=bool)
    valid = ~np.isnan(phi)
    mixed = (correct & valid).any(1) & (~correct & valid).any(1)
    entry: dict[str, Any] = {
        "n_questions": len(records),
        "n_mixed": int(mixed.sum()),
        "accuracy": float(correct[valid].mean()) if valid.any() else math.nan,
    }
    flexible = [r.get("correct_flexible") for r in records]  # absent from caches of older versions
    if valid.any() and None not in flexible:
        entry["accuracy_flexible"] = float(np.array(flexible, dtype=bool)[valid].mean())
    if mixed.sum() >= 2:
        c, v = correct[mixed], valid[mixed]
        entry["highest_phi"] = bootstrap(_highest_phi, phi[mixed], c, resamples=resamples, seed=seed).to_dict()
        entry["lowest_nll"] = bootstrap(_lowest_nll, nll[mixed], c, resamples=resamples, seed=seed).to_dict()
        chance = (c & v).sum(1) / v.sum(1)
        entry["random"] = bootstrap(np.mean, chance, resamples=resamples, seed=seed).to_dict()
    x, y, z = phi[valid], correct[valid].astype(float), nll[valid]
    if x.size >= 4 and 0 < y.mean() < 1:
        entry["partial_correlation"] = bootstrap(_partial, x, y, z, resamples=resamples, seed=seed).to_dict()
    return entry


def analyse(scored: Sequence[dict[str, Any]], resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """{"levels": {level: entry}} per MATH difficulty level and 'all'. An entry holds n_questions,
    n_mixed (questions with both correct and incorrect scored rationales), accuracy (the paper's
    strict answer check, which the analysis uses) and accuracy_flexible (math-verify; absent for
    caches written before qphi recorded it), and bootstrap
    Estimates: highest_phi, lowest_nll and random (the chance of a correct pick among mixed
    questions; resampled over questions) and partial_correlation (PHi with correctness given
    next-token loss over all scored rationales; resampled over rationales)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in scored:
        if record["level"] is not None:
            groups.setdefault(str(record["level"]), []).append(record)
    groups = dict(sorted(groups.items()))
    groups["all"] = list(scored)
    return {"levels": {name: _level(records, resamples, seed) for name, records in groups.items()}}


def plot_correctness(path: str | os.PathLike, analysis: dict[str, Any], title: str = "") -> None:
    """The paper's MATH figure from `analyse`'s result (levels with at least two mixed questions)."""
    levels = {k: v for k, v in analysis["levels"].items() if "highest_phi" in v}
    names = [k for k in levels if k != "all"] or list(levels)

    def band(key: str) -> tuple[list[float], list[float], list[float]]:
        est = [
            Estimate(**levels[n][key]) if key in levels[n] else Estimate(math.nan, math.nan, math.nan, 0) for n in names
        ]
        return [e.value for e in est], [e.low for e in est], [e.high for e in est]

    selection_chances(
        path,
        names,
        {
            "highest PHi": band("highest_phi"),
            "lowest next-token loss": band("lowest_nll"),
            "random pick": band("random"),
        },
        correlation=band("partial_correlation"),
        xlabel="difficulty level" if names != ["all"] else "",
        title=title,
    )


def write_report(out: str | os.PathLike, analysis: dict[str, Any], meta: dict[str, Any], title: str = "") -> None:
    out = Path(out)
    write_json(out / "correctness.json", {**meta, **analysis})
    if any("highest_phi" in v for v in analysis["levels"].values()):
        plot_correctness(out / "correctness.png", analysis, title=title)
