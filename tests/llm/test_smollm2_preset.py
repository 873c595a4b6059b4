"""The smollm2-cpu preset on the real model (slow: a few training steps and the level evaluation)."""

from __future__ import annotations

import pytest

from qphi.training import load_run_config, train

LEVELS = {"Trivial", "Memorized", "Random", "Literature", "Code"}


@pytest.mark.slow
def test_preset_preserves_the_model_and_reports_the_levels(smollm2, shared_data, tmp_path):
    """After training, the next-token loss on held-out literature is within 10 % of the base
    model's, and the natural-language levels report is written."""
    config = load_run_config(
        "smollm2-cpu",
        ["train.steps=4", "train.checkpoint_every=4", "data.mixture.eval_max_tokens=64",
         f"data.mixture.nl_levels_path={shared_data / 'natural_language_levels'}"],
    )  # fmt: skip
    result = train(config, tmp_path)
    levels = result.evaluation.levels
    assert set(levels) == LEVELS
    literature = levels["Literature"]
    assert abs(literature.nll_mean - literature.base_nll_mean) < 0.1 * literature.base_nll_mean
    assert (tmp_path / "eval.json").is_file()
