"""The LLM commands end to end on a PHi layer trained inside a tiny Llama."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from qphi.cli.main import main
from qphi.io import read_json
from qphi.training.mixture import MixtureEvaluation


def test_training_run_wrote_the_levels(run_dir):
    evaluation = json.loads((run_dir / "eval.json").read_text())
    assert set(evaluation["levels"]) == {"Trivial", "Literature", "Code"}
    assert all(v["n_tokens"] > 0 for v in evaluation["levels"].values())
    kinds = {json.loads(line)["kind"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()}
    assert {"train", "eval/Code"} <= kinds


def test_score_jsonl(run_dir, tmp_path, capsys):
    inputs = tmp_path / "in.jsonl"
    inputs.write_text(
        json.dumps({"text": "Once upon a time"}) + "\n" + json.dumps({"user": "q", "assistant": "#### 7"}) + "\n"
    )
    assert main(["score", "--phi", str(run_dir), "--jsonl", str(inputs), "--out", str(tmp_path / "out")]) == 0
    records = [json.loads(line) for line in (tmp_path / "out" / "tokens.jsonl").read_text().splitlines()]
    assert {r["text"] for r in records} == {0, 1}
    assert "".join(r["token"] for r in records if r["text"] == 0) == "Once upon a time"
    assert all(r["phi_bits"] == pytest.approx(r["phi_nats"] / 0.6931471805599453) for r in records)
    scored = [r for r in records if r["text"] == 1 and r["scored"]]
    assert "".join(r["token"] for r in scored) == "#### 7"
    assert records[-1]["nll_nats"] is None  # nothing follows the last token
    page = (tmp_path / "out" / "heatmap.html").read_text()
    assert page.count('class="t ') == len(records)


def test_score_with_the_base_model_named_and_the_first_tokens_only(run_dir, tmp_path, checkpoint):
    """--max-tokens cuts a text longer than the model's context of 256 (refused without it, see
    tests/reliability); --model may name the run's own base model."""
    long = checkpoint / "config.json"
    out = tmp_path / "o"
    assert main(["score", "--phi", str(run_dir), "--text", str(long), "--out", str(out), "--model", str(checkpoint),
                 "--max-tokens", "50"]) == 0  # fmt: skip
    records = [json.loads(line) for line in (out / "tokens.jsonl").read_text().splitlines()]
    assert sum(r["scored"] for r in records) == 50


def test_nl_levels(run_dir, tmp_path):
    assert main(["nl-levels", str(run_dir), "--out", str(tmp_path), "--max-tokens", "8"]) == 0
    summary = json.loads((tmp_path / "nl_levels.json").read_text())
    assert set(summary["levels"]) == {"Trivial", "Literature", "Code"}
    assert all(v["n_tokens"] == 8 * v["n_texts"] for v in summary["levels"].values())
    assert (tmp_path / "nl_levels.png").is_file() and (tmp_path / "nl_levels_nll.png").is_file()


def test_correctness_runs_and_reruns_from_its_caches(run_dir, data, tmp_path):
    args = ["correctness", str(run_dir), "--dataset", "math", "--data", str(data / "math"), "--questions", "4",
            "--samples-per-question", "3", "--max-new-tokens", "6", "--resamples", "20", "--out", str(tmp_path)]  # fmt: skip
    assert main(args) == 0
    generations = (tmp_path / "generations.jsonl").read_text()
    assert len(generations.splitlines()) == 4
    result = json.loads((tmp_path / "correctness.json").read_text())
    assert result["dataset"] == "math" and "all" in result["levels"]
    assert main(args) == 0  # the analysis again, from the caches
    assert (tmp_path / "generations.jsonl").read_text() == generations


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        (
            "--temperature",
            "0",
            "--temperature must be a positive number, got 0.0: pass a temperature above 0 (e.g. 0.6)",
        ),
        (
            "--samples-per-question",
            "1",
            "--samples-per-question must be at least 2 to compare rationales of a question: pass 2 or more",
        ),
    ],
)
def test_a_refused_option_names_itself_and_writes_nothing(run_dir, data, tmp_path, capsys, option, value, message):
    args = [
        "correctness",
        str(run_dir),
        "--dataset",
        "math",
        "--data",
        str(data / "math"),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main([*args, option, value]) == 2
    assert capsys.readouterr().err.strip() == f"qphi correctness: error: {message}"
    assert not (tmp_path / "o").exists()


def test_qphi_eval_of_a_pretrained_run_writes_what_training_wrote(run_dir, tmp_path, capsys):
    """eval.json of a pretrained-LLM run is typed (`MixtureEvaluation`): `qphi eval` writes it again
    as the training's final evaluation did, and prints one line per natural-language level."""
    copy = Path(shutil.copytree(run_dir, tmp_path / "run"))
    trained = read_json(copy / "eval.json", MixtureEvaluation)
    (copy / "eval.json").unlink()
    assert main(["eval", str(copy)]) == 0
    assert read_json(copy / "eval.json", MixtureEvaluation) == trained
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1 : 1 + len(trained.levels)]] == list(trained.levels)
