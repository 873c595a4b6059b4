"""Everything the reproduction measures on one trained run, cached beside the run.

Per level: mean PHi and next-token loss (SPEC §5.1); for discrete bottlenecks also the real
size of the code stream entropy-coded under the learned prior next to Σ PHi, and the health of
every codebook stage; the in-context-learning competence (SPEC §5.4); and the token records
that the complexity analysis pools over seeds (SPEC §5.3).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from qphi.errors import QPhiError
from qphi.evaluation.code_stream import code_stream_observer
from qphi.evaluation.icl_competence import icl_competence
from qphi.evaluation.pfa_levels import LevelEvaluation, TokenRecords, evaluate_levels
from qphi.evaluation.results import RunAnalysis
from qphi.io import read_json, write_bytes, write_json
from qphi.tasks import CharTokenizer, PFALevels
from qphi.training import load_run
from qphi.training.run_dir import latest_step

# 2: a truncated block's last character (no next token) is no longer evaluated; blocks carry their sample index
VERSION = 2


@dataclass
class AnalysedRun:
    analysis: RunAnalysis
    evaluation: LevelEvaluation  # the token records, for pooling over seeds


def analyse_run(run_dir: Path, device: str | torch.device = "cpu", icl_prompts: int = 64) -> AnalysedRun:
    """Evaluate a trained run (or load the cached analysis of its latest checkpoint).

    `icl_prompts` = 0 leaves out the in-context-learning competence (its `icl_competence` is None);
    a cached analysis is reused when it has the competence on as many prompts, or when none is wanted.
    """
    cached = _load_cached(run_dir)
    if cached is not None and _still_valid(cached.analysis, run_dir, icl_prompts):
        return cached
    config, model, step = load_run(run_dir, device)
    observer = code_stream_observer(model.phi.config.stage_sizes, coding=True)
    levels, tokenizer = PFALevels(config.data.pfa), CharTokenizer()
    evaluation = evaluate_levels(model, levels, tokenizer, config.eval, config.data.row_length, device, observer)
    competence = None
    if icl_prompts:
        competence = icl_competence(
            model,
            tokenizer,
            config.data.pfa,
            context_length=config.data.row_length,
            num_prompts=icl_prompts,
            seed=config.eval.seed,
        )
    analysis = RunAnalysis(
        version=VERSION,
        step=step,
        bottleneck=config.phi.bottleneck.name,
        seed=config.train.seed,
        levels=evaluation.summary(),
        coding=observer.coding_summary() if observer else None,
        codebook_health=observer.health_summary() if observer else None,
        icl_competence=competence,
        blocks=evaluation.blocks,
    )
    _save(run_dir, analysis, evaluation.tokens)
    return AnalysedRun(analysis, evaluation)


def analysis_is_current(run_dir: Path, icl_prompts: int) -> bool:
    """Whether `analyse_run(run_dir, …, icl_prompts)` would read its cache rather than compute."""
    cached = _load_cached(run_dir)
    return cached is not None and _still_valid(cached.analysis, run_dir, icl_prompts)


def _still_valid(analysis: RunAnalysis, run_dir: Path, icl_prompts: int) -> bool:
    competence = analysis.icl_competence
    return (
        analysis.version == VERSION
        and analysis.step == latest_step(run_dir)
        and (not icl_prompts or (competence is not None and competence.n_prompts == icl_prompts))
    )


def _save(run_dir: Path, analysis: RunAnalysis, tokens: TokenRecords) -> None:
    arrays = {k: v for k, v in vars(tokens).items() if v is not None}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_bytes(run_dir / "analysis_tokens.npz", buffer.getvalue())
    write_json(run_dir / "analysis.json", analysis)


def _load_cached(run_dir: Path) -> AnalysedRun | None:
    summary_path, tokens_path = run_dir / "analysis.json", run_dir / "analysis_tokens.npz"
    if not (summary_path.is_file() and tokens_path.is_file()):
        return None
    try:
        analysis = read_json(summary_path, RunAnalysis)
        with np.load(tokens_path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (QPhiError, OSError, ValueError):
        return None  # a damaged cache, or one an older version wrote, is recomputed
    tokens = TokenRecords(**{k: arrays.get(k) for k in TokenRecords.__dataclass_fields__})
    return AnalysedRun(analysis, LevelEvaluation(tokens, analysis.blocks))
