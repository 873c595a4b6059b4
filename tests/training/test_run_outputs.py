"""What a run leaves behind: metrics.jsonl, eval.json per level, TensorBoard events, a config
that loads again; and the same seed gives the same records whatever the loader workers."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from qphi.bottlenecks.base import cosine_anneal
from qphi.cli.main import main
from qphi.evaluation.codebook_health import HEALTH_SCALARS, health_scalars
from qphi.evaluation.pfa_levels import LevelResults, evaluate_levels
from qphi.io import read_json
from qphi.tasks import LEVEL_KEYS, CharTokenizer, PFALevels
from qphi.training import load_run, load_run_config, train
from qphi.training.run_dir import saved_config
from qphi.training.schedules import learning_rate

from .runs import assert_same_tensors, metric_records, tiny_config, weights

OVERRIDES = (
    "train.steps=4",
    "train.log_every=1",
    "train.eval_every=2",
    "train.tensorboard=true",
    "eval.levels=[0,1,2,3,4,5]",
    "eval.samples_per_level=3",
)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, object]:
    run = tmp_path_factory.mktemp("outputs") / "run"
    config = tiny_config(*OVERRIDES)
    result = train(config, run)
    return run, config, result


def test_metrics_lines_record_every_step_and_the_evaluations(finished):
    run, config, _ = finished
    records = metric_records(run)
    train_lines = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train_lines] == [1, 2, 3, 4]
    optim = config.optim
    for r in train_lines:
        index = r["step"] - 1  # the line of step s describes the update made with the settings of index s-1
        assert {"loss", "nll", "phi", "phi_bits", "loss_phi", "lr", "tau", "rate_scale", "grad_norm_model",
                "grad_norm_phi"} <= r.keys()  # fmt: skip
        assert r["lr"] == pytest.approx(
            learning_rate(index, 4, optim.lr, optim.warmup_steps, optim.schedule, optim.min_lr_ratio)
        )
        gumbel = config.phi.bottleneck
        assert r["tau"] == pytest.approx(cosine_anneal(gumbel.tau_start, gumbel.tau_end, index / 3))
        assert r["phi_bits"] == pytest.approx(r["phi"] / math.log(2))
        assert r["loss"] == pytest.approx(r["nll"] + sum(v for k, v in r.items() if k.startswith("loss_")), rel=1e-5)
    evaluations = {(r["step"], r["kind"]) for r in records if r["kind"] != "train"}
    kinds = [f"eval/{LEVEL_KEYS[level]}" for level in range(6)] + ["eval/codebook_health"]
    assert evaluations == {(step, kind) for step in (2, 4) for kind in kinds}


def test_eval_json_reports_every_level(finished):
    run, config, result = finished
    summary = json.loads((run / "eval.json").read_text())
    assert read_json(run / "eval.json", LevelResults) == result.evaluation
    assert summary["step"] == 4 and summary["bottleneck"] == "gumbel"
    assert set(summary["levels"]) == {"mem_seq", "mem_prog", "fixed_structure", "icll", "random", "copy"}
    for entry in summary["levels"].values():
        assert entry["n_blocks"] == 3 and entry["n_tokens"] > 0
        assert entry["phi_bits_mean"] == pytest.approx(entry["phi_mean"] / math.log(2))
        assert len(entry["phi_per_stage"]) == len(config.phi.stage_sizes)
        assert {"nll_mean", "kl_bits_mean"} <= entry.keys()


def test_evaluations_report_the_health_of_the_evaluated_codes(finished):
    """eval.json's codebook health counts exactly the codes `evaluate_levels` records at the
    evaluated characters of the final model, and the metrics line at the last step holds its scalars."""
    run, config, _ = finished
    health = json.loads((run / "eval.json").read_text())["codebook_health"]
    _, model, _ = load_run(run)
    tokens = evaluate_levels(
        model, PFALevels(config.data.pfa), CharTokenizer(), config.eval, config.data.row_length
    ).tokens
    assert len(health["stages"]) == len(config.phi.stage_sizes) == tokens.codes.shape[0]
    for s, (stage, size) in enumerate(zip(health["stages"], config.phi.stage_sizes, strict=True)):
        counts = np.bincount(tokens.codes[s], minlength=size)
        assert stage["counts"] == counts.tolist() and stage["num_codes"] == size
        assert stage["utilisation"] == pytest.approx(np.mean(counts > 0))
        usage = counts[counts > 0] / counts.sum()
        assert stage["perplexity"] == pytest.approx(math.exp(-(usage * np.log(usage)).sum()), rel=1e-6)
        # a stage's code length is its share of PHi
        assert stage["code_length_bits"] == pytest.approx(tokens.phi_per_stage[s].mean() / math.log(2), rel=1e-4)
    line = next(r for r in metric_records(run) if r["kind"] == "eval/codebook_health" and r["step"] == 4)
    assert line == {
        "step": 4,
        "kind": "eval/codebook_health",
        **health_scalars(read_json(run / "eval.json", LevelResults).codebook_health),
    }
    assert set(line) - {"step", "kind"} == {f"stage0/{key}" for key in HEALTH_SCALARS}


def test_qphi_eval_reports_the_same_codebook_health(finished, tmp_path, capsys):
    run, _, _ = finished
    copy = shutil.copytree(run, tmp_path / "run")
    (copy / "eval.json").unlink()
    assert main(["eval", str(copy)]) == 0
    expected = json.loads((run / "eval.json").read_text())
    assert json.loads((copy / "eval.json").read_text()) == expected
    out = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(out) if line.split()[:2] == ["stage", "used/K"])
    used = sum(c > 0 for c in expected["codebook_health"]["stages"][0]["counts"])
    assert out[header + 1].split()[:2] == ["0", f"{used}/{expected['codebook_health']['stages'][0]['num_codes']}"]


def test_a_continuous_run_reports_no_codebook_health(tmp_path):
    train(tiny_config("phi.bottleneck=continuous", "train.steps=2", "train.eval_every=1"), tmp_path)
    assert json.loads((tmp_path / "eval.json").read_text())["codebook_health"] is None
    kinds = {r["kind"] for r in metric_records(tmp_path)}
    assert "eval/mem_seq" in kinds and not any("codebook" in k for k in kinds)


def test_tensorboard_holds_the_same_scalars(finished):
    run, _, _ = finished
    files = list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert len(files) == 1
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    losses = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert losses == [(r["step"], pytest.approx(r["loss"])) for r in metric_records(run) if r["kind"] == "train"]
    assert {"eval/icll/phi_mean", "eval/codebook_health/stage0/utilisation"} <= set(events.Tags()["scalars"])


def test_the_saved_config_loads_back_to_the_same_run_config(finished):
    run, config, _ = finished
    assert saved_config(run) == config
    assert load_run_config(run / "config.yaml") == config
    loaded, model, step = load_run(run)
    assert loaded == config and step == 4 and not model.training
    assert_same_tensors(model.trainable_state_dict(), weights(run))


def test_the_same_seed_gives_identical_records_whatever_the_loader_workers(tmp_path):
    """Bit for bit: JSON keeps a float's shortest repr, which reads back to the same double, so
    `==` on the records compares every metric exactly (only the measured tokens_per_s is left out)."""
    config = tiny_config("train.steps=4", "train.checkpoint_every=4")
    train(config, tmp_path / "a")
    train(config, tmp_path / "b")
    train(tiny_config("train.steps=4", "train.checkpoint_every=4", "train.num_workers=2"), tmp_path / "workers")
    reference = metric_records(tmp_path / "a")
    assert [r["step"] for r in reference if r["kind"] == "train"] == [1, 2, 3, 4]
    assert {r["kind"] for r in reference} >= {"eval/mem_seq", "eval/codebook_health"}
    for other in ("b", "workers"):
        assert metric_records(tmp_path / other) == reference
        assert_same_tensors(weights(tmp_path / other), weights(tmp_path / "a"))
    train(tiny_config("train.steps=4", "train.checkpoint_every=4", "train.seed=1"), tmp_path / "seed1")
    assert metric_records(tmp_path / "seed1") != reference
    assert not torch.equal(
        weights(tmp_path / "seed1")["phi.prior.initial"], weights(tmp_path / "a")["phi.prior.initial"]
    )
