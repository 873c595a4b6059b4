"""Everything the reproduction measures on one trained run, cached beside the run.

Per level: mean PHi and next-token loss (SPEC §5.1); for discrete bottlenecks also the real
size of the code stream entropy-coded under the learned prior next to Σ PHi, and the health of
every codebook stage; the in-context-learning competence (SPEC §5.4); and the token records
that the complexity analysis pools over seeds (SPEC §5.3).
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qphi.evaluation.codebook_health import CodebookHealthAccumulator
from qphi.evaluation.coding import measure_coding
from qphi.evaluation.icl_competence import icl_competence
from qphi.evaluation.levels import LevelEvaluation, TokenRecords, evaluate_levels
from qphi.io import write_bytes, write_json
from qphi.models import PHiModelOutput
from qphi.tasks import LEVEL_KEYS, Batch, CharTokenizer, PFALevels
from qphi.training import load_run
from qphi.training.checkpoint import latest_step

VERSION = 1
LN2 = math.log(2.0)


@dataclass
class RunAnalysis:
    summary: dict[str, Any]
    evaluation: LevelEvaluation


class _CodingTally:
    """Per level: real coded bits, ideal bits (Σ −log2 p(code)) and coded tokens."""

    def __init__(self) -> None:
        self.totals: dict[int, list[float]] = {}

    def add(self, level: int, codes: torch.Tensor, log_probs: torch.Tensor, mask: torch.Tensor) -> None:
        report = measure_coding(codes, log_probs, mask)
        tally = self.totals.setdefault(level, [0.0, 0.0, 0.0])
        tally[0] += float(report.coded_bits.sum())
        tally[1] += float(report.ideal_bits.sum())
        tally[2] += float(report.num_codes.sum()) / codes.shape[0]

    def summary(self) -> dict[str, Any]:
        return {
            LEVEL_KEYS[level]: {
                "coded_bits_per_token": coded / tokens,
                "ideal_bits_per_token": ideal / tokens,
                "ratio": coded / ideal if ideal else None,
                "tokens": int(tokens),
            }
            for level, (coded, ideal, tokens) in sorted(self.totals.items())
        }


def analyse_run(run_dir: Path, device: str | torch.device = "cpu", icl_prompts: int = 64) -> RunAnalysis:
    """Evaluate a trained run (or load the cached analysis of its latest checkpoint)."""
    cached = _load_cached(run_dir)
    if cached is not None and cached.summary["step"] == latest_step(run_dir) and cached.summary["version"] == VERSION:
        return cached
    config, model, step = load_run(run_dir, device)
    stage_sizes = config.phi.stage_sizes
    health = CodebookHealthAccumulator(stage_sizes) if stage_sizes else None
    coding = _CodingTally() if stage_sizes else None

    def observe(level: int, batch: Batch, out: PHiModelOutput) -> None:
        if health is None or coding is None:
            return
        mask = batch.meta["is_text"]
        log_probs = out.phi.prior_params.log_probs().float().cpu()
        health.update(out.phi.codes.cpu(), log_probs, mask.cpu())
        coding.add(level, out.phi.codes.cpu(), log_probs, mask.cpu())

    levels, tokenizer = PFALevels(config.data.pfa), CharTokenizer()
    evaluation = evaluate_levels(model, levels, tokenizer, config.eval, config.data.row_length, device, observe)
    summary = {
        "version": VERSION,
        "step": step,
        "bottleneck": config.phi.bottleneck,
        "seed": config.train.seed,
        **evaluation.summary(),
        "coding": coding.summary() if coding else None,
        "codebook_health": health.compute().to_dict() if health else None,
        "icl_competence": icl_competence(
            model,
            tokenizer,
            config.data.pfa,
            context_length=config.data.row_length,
            num_prompts=icl_prompts,
            seed=config.eval.seed,
            device=device,
        ),
        "blocks": evaluation.blocks,
    }
    _save(run_dir, summary, evaluation.tokens)
    return RunAnalysis(summary=summary, evaluation=evaluation)


def _save(run_dir: Path, summary: dict[str, Any], tokens: TokenRecords) -> None:
    arrays = {k: v for k, v in vars(tokens).items() if v is not None}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_bytes(run_dir / "analysis_tokens.npz", buffer.getvalue())
    write_json(run_dir / "analysis.json", summary)


def _load_cached(run_dir: Path) -> RunAnalysis | None:
    summary_path, tokens_path = run_dir / "analysis.json", run_dir / "analysis_tokens.npz"
    if not (summary_path.is_file() and tokens_path.is_file()):
        return None
    try:
        summary = json.loads(summary_path.read_text())
        with np.load(tokens_path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError):
        return None  # a damaged cache is recomputed
    tokens = TokenRecords(**{k: arrays.get(k) for k in TokenRecords.__dataclass_fields__})
    return RunAnalysis(summary=summary, evaluation=LevelEvaluation(tokens, summary["blocks"]))
