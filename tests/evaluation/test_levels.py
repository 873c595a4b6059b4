"""The per-level evaluation counts the characters that have a next token: a truncated block's last
character (its target is ignored, so its loss would be 0) is not one of them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from training.runs import tiny_config

from qphi.evaluation.pfa_levels import evaluate_levels
from qphi.models import build_model
from qphi.seeding import mix_seed
from qphi.tasks import LEVEL_KEYS, CharTokenizer, PFALevels
from qphi.tasks.packing import fit_document

ROW = 420  # blocks have 270–600 characters: some are truncated, some whole


def test_only_characters_with_a_next_token_are_evaluated():
    config = tiny_config("model.max_length=512", "eval.levels=[0,3,4]", "eval.samples_per_level=6", "eval.batch_size=6")
    torch.manual_seed(0)
    model = build_model(config.model, config.phi)
    levels = PFALevels(config.data.pfa)
    evaluation = evaluate_levels(model, levels, CharTokenizer(), config.eval, ROW)
    expected_blocks = []
    for level in config.eval.levels:  # the same samples, drawn as the evaluation draws them
        generator = torch.Generator().manual_seed(mix_seed(config.eval.seed, level))
        expected_blocks += [fit_document(levels.sample(level, generator), ROW) for _ in range(6)]
    assert any(s.truncated for s in expected_blocks) and not all(s.truncated for s in expected_blocks)
    for block, sample in zip(evaluation.blocks, expected_blocks, strict=True):
        assert (block.level, block.truncated) == (sample.level, sample.truncated)
        assert block.n_tokens == len(sample.text) - sample.truncated
    tokens = evaluation.tokens
    assert tokens.phi.size == tokens.nll.size == sum(b.n_tokens for b in evaluation.blocks)
    assert (tokens.nll > 0).all()  # an untrained model gives every real target a loss
    for level, summary in evaluation.summary().items():
        members = [b for b in evaluation.blocks if LEVEL_KEYS[b.level] == level]
        weights = np.array([b.n_tokens for b in members])
        assert summary.nll_mean == pytest.approx(np.average([b.nll_mean for b in members], weights=weights))
        assert math.isclose(summary.phi_bits_mean, summary.phi_mean / math.log(2))
        assert summary.n_blocks == len(members)
        sel = tokens.level == next(k for k, v in LEVEL_KEYS.items() if v == level)
        assert summary.kl_bits_mean == pytest.approx(tokens.kl[:, sel].sum(0).mean() / math.log(2), rel=1e-5)
