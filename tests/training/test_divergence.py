"""A non-finite loss or gradient stops training with a message that names the step and the
term, and the last good checkpoint stays as it was (nothing non-finite is ever saved)."""

from __future__ import annotations

import math

import pytest
import torch

from qphi.errors import QPhiError
from qphi.phi import PHiLayer
from qphi.training import train
from qphi.training.trainer import Trainer, TrainingDiverged

from .runs import file_digests, tiny_config, weights

SCHEDULE = ("train.steps=8", "train.checkpoint_every=3", "train.log_every=1")


def poison_phi_term(monkeypatch, value: float, call: int) -> None:
    """Multiply the PHi layer's "phi" loss term by `value` on its `call`-th training call (0-based)."""
    original = PHiLayer._losses
    calls = []

    def losses(self, *args, **kwargs):
        terms = original(self, *args, **kwargs)
        if self.training:
            calls.append(None)
            if len(calls) - 1 == call:
                terms["phi"] = terms["phi"] * value
        return terms

    monkeypatch.setattr(PHiLayer, "_losses", losses)


def checkpoints(run_dir):
    return sorted(p.name for p in (run_dir / "checkpoints").glob("step-*"))


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_non_finite_loss_term_stops_training_and_keeps_the_last_checkpoint(value, tmp_path, monkeypatch):
    """The PHi term turns non-finite during step 5 (the layer's 5th training call)."""
    poison_phi_term(monkeypatch, value, call=4)
    with pytest.raises(TrainingDiverged) as error:
        train(tiny_config(*SCHEDULE), tmp_path)
    message = str(error.value)
    assert isinstance(error.value, QPhiError) and "\n" not in message
    assert "step 5" in message and f"phi={value:g}" in message and "step-0000003" in message
    assert checkpoints(tmp_path) == ["step-0000003"]
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step-0000003"
    assert not (tmp_path / "eval.json").exists()


def test_the_kept_checkpoint_is_not_rewritten(tmp_path, monkeypatch):
    """Stopping at a checkpoint step: the saved files are byte-identical afterwards."""
    train(tiny_config(*SCHEDULE, "train.keep_checkpoints=5"), tmp_path / "reference")
    poison_phi_term(monkeypatch, math.nan, call=5)
    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="step 6"):
        train(tiny_config(*SCHEDULE, "train.keep_checkpoints=5"), run)
    saved = file_digests(run / "checkpoints" / "step-0000003")
    assert saved == file_digests(tmp_path / "reference" / "checkpoints" / "step-0000003")


def test_an_absurd_learning_rate_is_caught(tmp_path):
    with pytest.raises(TrainingDiverged, match=r"training diverged at step \d+: non-finite loss \(.*=(nan|inf)"):
        train(tiny_config(*SCHEDULE, "optim.lr=1e6", "optim.warmup_steps=0", "train.checkpoint_every=1"), tmp_path)
    assert all(torch.isfinite(t).all() for t in weights(tmp_path).values() if t.is_floating_point())


def test_a_non_finite_gradient_with_a_finite_loss_is_never_saved(tmp_path, monkeypatch):
    """A NaN gradient at a checkpoint step (step 3) would make the weights NaN before they are
    saved; training must stop before the optimizer step and keep nothing non-finite."""
    original = Trainer._train_step

    def step_with_nan_gradient(self, index, batch):
        if index == 2:
            weight = self.model.phi.bottleneck.decode.weight
            handle = weight.register_hook(lambda g: torch.full_like(g, math.nan))
            try:
                return original(self, index, batch)
            finally:
                handle.remove()
        return original(self, index, batch)

    monkeypatch.setattr(Trainer, "_train_step", step_with_nan_gradient)
    with pytest.raises(TrainingDiverged, match=r"step 3: non-finite gradient norm \(grad_norm_phi=nan\)"):
        train(tiny_config(*SCHEDULE, "train.checkpoint_every=1"), tmp_path)
    assert checkpoints(tmp_path) == ["step-0000001", "step-0000002"]
    assert all(torch.isfinite(t).all() for t in weights(tmp_path).values() if t.is_floating_point())
