"""Loaders of the real data: both MATH layouts, GSM-8k, the natural-language levels, and path errors."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from qphi.errors import QPhiError
from qphi.tasks.natural_language import load_nl_levels
from qphi.tasks.reasoning import (
    GSM8K_PROMPT_SUFFIX,
    MATH_PROMPT_SUFFIX,
    build_prompt,
    load_gsm8k,
    load_math,
)

MATH_RECORDS = [
    ("algebra", "1", "Level 3", "What is $1+1$?", "It is $\\boxed{2}$."),
    ("algebra", "10", "Level 1", "Half of one?", "It is $\\boxed{\\dfrac12}$."),
    ("algebra", "2", "Level ?", "Odd one?", "$\\fbox{x = 7}$"),
    ("number_theory", "5", "Level 5", "Count?", "$\\boxed{1,000}$ ways"),
]


def _write_math_layouts(root):
    """The same problems as `<root>/tree/test/<subject>/<id>.json` and as `<root>/flat/test.jsonl`."""
    (root / "flat").mkdir()
    lines = []
    for subject, number, level, problem, solution in MATH_RECORDS:
        folder = root / "tree" / "test" / subject
        folder.mkdir(parents=True, exist_ok=True)
        record = {"problem": problem, "level": level, "type": subject.title(), "solution": solution}
        (folder / f"{number}.json").write_text(json.dumps(record))
        lines.append(json.dumps({"id": f"test/{subject}/{number}", "subject": subject, **record}))
    (root / "flat" / "test.jsonl").write_text("\n".join(lines) + "\n")


def test_both_math_layouts_load_the_same_problems(tmp_path):
    _write_math_layouts(tmp_path)
    tree = load_math(tmp_path / "tree", split="test")
    flat = load_math(tmp_path / "flat", split="test")
    assert sorted(tree, key=lambda p: p.id) == sorted(flat, key=lambda p: p.id)
    assert [p.id for p in tree] == [
        "test/algebra/1",
        "test/algebra/2",
        "test/algebra/10",
        "test/number_theory/5",
    ]
    by_id = {p.id: p for p in tree}
    assert by_id["test/algebra/10"].answer == "\\frac{1}{2}" and by_id["test/algebra/10"].level == 1
    assert by_id["test/algebra/2"].answer == "7" and by_id["test/algebra/2"].level is None
    assert by_id["test/number_theory/5"].answer == "1000" and by_id["test/number_theory/5"].subject == "number_theory"
    assert load_math(tmp_path / "flat" / "test.jsonl") == flat


def test_real_math_and_gsm8k(data_dir):
    train = load_math(data_dir / "math", split="train")
    assert len(train) == 7500 and sum(p.level is None for p in train) == 2
    assert sum(p.answer is None for p in train) == 2  # two reference solutions box nothing: \boxed{}
    test = load_math(data_dir / "math")
    assert Counter(p.level for p in test) == Counter({5: 1324, 4: 1214, 3: 1131, 2: 894, 1: 437})
    assert len(load_gsm8k(data_dir / "gsm8k", split="train")) == 7473


def test_missing_or_broken_data_is_a_user_error(tmp_path):
    where = re.escape(f"'{tmp_path / 'nowhere'}'")
    with pytest.raises(QPhiError, match=where + r".*qphi data fetch math.*--data.*data\.mixture\.math_path"):
        load_math(tmp_path / "nowhere")
    with pytest.raises(QPhiError, match=r"GSM-8k.*test\.jsonl"):
        load_gsm8k(tmp_path)
    with pytest.raises(QPhiError, match="natural-language"):
        load_nl_levels(tmp_path)
    (tmp_path / "test.jsonl").write_text('{"question": "q", "answer": "#### 1"}\n{broken\n')
    with pytest.raises(QPhiError, match="line 2"):
        load_gsm8k(tmp_path)
    (tmp_path / "test.jsonl").write_text('{"question": "q"}\n')
    with pytest.raises(QPhiError, match="answer"):
        load_gsm8k(tmp_path)
    (tmp_path / "test.jsonl").write_text('{"question": "q", "answer": "no marker"}\n')
    with pytest.raises(QPhiError, match="no final answer"):
        load_gsm8k(tmp_path)
    with pytest.raises(QPhiError, match="split"):
        load_gsm8k(tmp_path, split="dev")
    (tmp_path / "math.jsonl").write_text('{"problem": "p", "level": "Level 1", "solution": "no box"}\n')
    with pytest.raises(QPhiError, match="record 0 has no final answer"):
        load_math(tmp_path / "math.jsonl")


def test_natural_language_levels(data_dir, tmp_path):
    records = load_nl_levels(data_dir / "natural_language_levels")
    assert len(records) == 53
    assert Counter(r.level for r in records) == {
        "shuffled": 20,
        "code": 15,
        "literature": 10,
        "predictable": 5,
        "licenses": 3,
    }
    names = [r.name for r in records if r.level == "code"]
    assert names == [f"code_{i}" for i in range(1, 16)]
    assert {r.category for r in records} == {"Trivial", "Memorized", "Random", "Literature", "Code"}
    assert all(r.assistant and r.user for r in records)
    (tmp_path / "bad.json").write_text('{"level": "code", "user": "u"}')
    with pytest.raises(QPhiError, match="assistant"):
        load_nl_levels(tmp_path)


def test_prompts_carry_the_reference_suffixes():
    assert build_prompt("What is 2+2?", "gsm8k") == f"What is 2+2? {GSM8K_PROMPT_SUFFIX}"
    assert build_prompt("Solve $x$.", "math").endswith(
        "present your solution in a LaTeX box (i.e., $\\boxed{SOLUTION}$)."
    )
    assert MATH_PROMPT_SUFFIX.startswith("Let's think step by step.")
    with pytest.raises(QPhiError, match="dataset"):
        build_prompt("q", "mmlu")
