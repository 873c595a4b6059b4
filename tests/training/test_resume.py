"""A run that is stopped and resumed ends exactly where an uninterrupted run ends: the same
weights and optimizer state bit for bit, and the same metrics lines (SPEC §8: resume of
optimizer state). Stops are simulated in-process here; test_signals.py kills real processes."""

from __future__ import annotations

import signal

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from qphi.training import train
from qphi.training.trainer import Trainer

from .runs import assert_same_tensors, metric_records, optimizer_tensors, tiny_config, weights

# 8 steps, checkpoints at 3 and 6, metrics lines every 2 steps: a stop after step 4 or 5 falls
# between a checkpoint and a log line, which is where a resumed run can go wrong.
SCHEDULE = ("train.steps=8", "train.checkpoint_every=3", "train.log_every=2")
CASES = {
    "continuous": ("phi.bottleneck=continuous",),
    "gumbel": ("phi.bottleneck=gumbel",),
    "vq": ("phi.bottleneck=vq",),
    "residual": ("phi.bottleneck=residual",),
    "fsq": ("phi.bottleneck=fsq",),
    "gumbel-packed": ("phi.bottleneck=gumbel", "data.pack=true"),
    "lstm": ("model.architecture=lstm", "phi.bottleneck=gumbel"),
    "grad-accum": ("phi.bottleneck=gumbel", "train.grad_accum=2"),
}


def stop_at(monkeypatch: pytest.MonkeyPatch, step_index: int, how: str) -> None:
    """Make the training step with 0-based index `step_index` crash, or receive a Ctrl-C."""
    original = Trainer._train_step

    def step(self, index, batch):
        if index == step_index:
            if how == "crash":
                raise RuntimeError("simulated crash")
            signal.raise_signal(signal.SIGINT)  # arrives mid-step, like a real Ctrl-C
        return original(self, index, batch)

    monkeypatch.setattr(Trainer, "_train_step", step)


@pytest.mark.parametrize("case", list(CASES))
def test_resume_after_a_crash_reaches_the_uninterrupted_weights_and_metrics(case, tmp_path, monkeypatch):
    config = tiny_config(*SCHEDULE, *CASES[case])
    train(config, tmp_path / "full")
    with monkeypatch.context() as patch:
        stop_at(patch, 4, "crash")  # during step 5: checkpoint 3 exists, metrics lines up to step 4
        with pytest.raises(RuntimeError, match="simulated crash"):
            train(config, tmp_path / "part")
    assert [r["step"] for r in metric_records(tmp_path / "part")] == [2, 4]
    result = train(config, tmp_path / "part", resume=True)
    assert result.step == 8 and not result.interrupted
    assert_same_tensors(weights(tmp_path / "part"), weights(tmp_path / "full"))
    assert_same_tensors(optimizer_tensors(tmp_path / "part"), optimizer_tensors(tmp_path / "full"))
    assert metric_records(tmp_path / "part") == metric_records(tmp_path / "full")


def test_ctrl_c_saves_at_the_current_step_and_resumes_exactly(tmp_path, monkeypatch, capsys):
    config = tiny_config(*SCHEDULE)
    train(config, tmp_path / "full")
    handler_before = signal.getsignal(signal.SIGINT)  # SIG_IGN when pytest runs as a background job
    with monkeypatch.context() as patch:
        stop_at(patch, 4, "sigint")
        result = train(config, tmp_path / "part")
    assert result.interrupted and result.step == 5
    assert "interrupted: saving a checkpoint" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "part" / "checkpoints").glob("step-*")) == [
        "step-0000003",
        "step-0000005",
    ]
    assert not (tmp_path / "part" / "eval.json").exists()  # no final evaluation of a stopped run
    assert signal.getsignal(signal.SIGINT) is handler_before  # handlers restored
    train(config, tmp_path / "part", resume=True)
    assert_same_tensors(weights(tmp_path / "part"), weights(tmp_path / "full"))
    assert metric_records(tmp_path / "part") == metric_records(tmp_path / "full")


def test_a_run_killed_before_its_first_checkpoint_starts_over_cleanly(tmp_path, monkeypatch):
    """Resume finds no checkpoint: it starts from step 0, and the metrics lines the killed
    attempt wrote are not kept beside the new ones."""
    config = tiny_config(*SCHEDULE)
    train(config, tmp_path / "full")
    with monkeypatch.context() as patch:
        stop_at(patch, 2, "crash")
        with pytest.raises(RuntimeError):
            train(config, tmp_path / "part")
    assert [r["step"] for r in metric_records(tmp_path / "part")] == [2]
    train(config, tmp_path / "part", resume=True)
    assert_same_tensors(weights(tmp_path / "part"), weights(tmp_path / "full"))
    assert metric_records(tmp_path / "part") == metric_records(tmp_path / "full")


def test_resuming_a_finished_run_writes_no_duplicate_records(tmp_path):
    config = tiny_config(*SCHEDULE)
    train(config, tmp_path / "run")
    before = metric_records(tmp_path / "run")
    result = train(config, tmp_path / "run", resume=True)
    assert result.step == 8 and result.evaluation is not None
    assert metric_records(tmp_path / "run") == before


def test_a_resumed_run_may_train_longer(tmp_path):
    """train.steps is among the settings a resume may change: a finished run can be extended."""
    train(tiny_config(*SCHEDULE), tmp_path / "run")
    result = train(tiny_config(*SCHEDULE, "train.steps=10"), tmp_path / "run", resume=True)
    assert result.step == 10
    assert [r["step"] for r in metric_records(tmp_path / "run") if r["kind"] == "train"] == [2, 4, 6, 8, 10]


def tensorboard_losses(run_dir) -> list[tuple[int, float]]:
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars("train/loss")]


@pytest.mark.parametrize("crash_at", [2, 4])  # before the first checkpoint, and after it
def test_tensorboard_shows_one_curve_after_a_resume(crash_at, tmp_path, monkeypatch):
    """The events an attempt wrote after its last checkpoint are hidden, not shown twice."""
    config = tiny_config(*SCHEDULE, "train.tensorboard=true", "train.log_every=1")
    train(config, tmp_path / "full")
    with monkeypatch.context() as patch:
        stop_at(patch, crash_at, "crash")
        with pytest.raises(RuntimeError):
            train(config, tmp_path / "part")
    train(config, tmp_path / "part", resume=True)
    assert tensorboard_losses(tmp_path / "part") == tensorboard_losses(tmp_path / "full")
