"""GSM-8k and MATH problems (SPEC §4.4): loaders, gold answers and the reference's prompts.

GSM-8k is read from `<dir>/{train,test}.jsonl` (question, answer). MATH is read from either
layout: `<dir>/{train,test}.jsonl` (id, subject, level, type, problem, solution), or the
original one-file-per-problem tree `<dir>/{train,test}/<subject>/<n>.json` (problem, level,
type, solution), whose problems get the same ids ('test/algebra/1').
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from qphi.errors import QPhiError
from qphi.tasks.answers import (
    Dataset,
    answers_equivalent,
    answers_match,
    extract_answer,
    flexible_answer,
    gsm8k_answer,
    last_boxed,
    math_answer,
    normalize_gsm8k_answer,
    normalize_math_answer,
)
from qphi.tasks.data_files import data_path, missing, read_json, read_jsonl, require_keys

GSM8K_PROMPT_SUFFIX = "Let's think step by step. At the end, you must write the answer as an integer after '####'."
MATH_PROMPT_SUFFIX = (
    "Let's think step by step. At the end, present your solution in a LaTeX box (i.e., $\\boxed{SOLUTION}$)."
)
PROMPT_SUFFIXES: dict[str, str] = {"gsm8k": GSM8K_PROMPT_SUFFIX, "math": MATH_PROMPT_SUFFIX}

Split = Literal["train", "test"]

__all__ = [
    "GSM8K_PROMPT_SUFFIX",
    "MATH_PROMPT_SUFFIX",
    "PROMPT_SUFFIXES",
    "ReasoningProblem",
    "answers_equivalent",
    "answers_match",
    "build_prompt",
    "extract_answer",
    "flexible_answer",
    "gsm8k_answer",
    "last_boxed",
    "load_gsm8k",
    "load_math",
    "math_answer",
    "normalize_gsm8k_answer",
    "normalize_math_answer",
]


@dataclass(frozen=True)
class ReasoningProblem:
    """One problem: `solution` is the reference rationale, `answer` its normalised final answer.

    answer is None only where the reference solution boxes nothing (two MATH train problems
    have an empty \\boxed{}); such a problem marks no rationale correct.
    level: MATH difficulty 1..5 (None for GSM-8k and for MATH's two 'Level ?' problems).
    """

    id: str
    dataset: Dataset
    question: str
    solution: str
    answer: str | None
    level: int | None = None
    subject: str | None = None

    @property
    def prompt(self) -> str:
        return build_prompt(self.question, self.dataset)

    def is_correct(self, rationale: str, flexible: bool = False) -> bool:
        """Whether a generated rationale's final answer equals the gold answer: by the paper's strict
        rule, or `flexible`ly (lenient extraction, math-verify equivalence; see qphi.tasks.answers)."""
        if not flexible:
            return answers_match(extract_answer(rationale, self.dataset), self.answer, self.dataset)
        gold = self.answer if self.dataset == "gsm8k" else last_boxed(self.solution)
        return answers_equivalent(flexible_answer(rationale, self.dataset), gold, self.dataset)


def build_prompt(question: str, dataset: Dataset) -> str:
    """The user turn: the question, a space, and the dataset's step-by-step instruction."""
    if dataset not in PROMPT_SUFFIXES:
        raise QPhiError(f"unknown dataset '{dataset}': use one of {sorted(PROMPT_SUFFIXES)}")
    return f"{question.strip()} {PROMPT_SUFFIXES[dataset]}"


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise QPhiError(f"split '{split}' does not exist: use 'train' or 'test'")


def _no_answer(where: str) -> QPhiError:
    return QPhiError(f"{where} has no final answer: is this the right dataset?")


def load_gsm8k(path: str | os.PathLike | None = None, split: Split = "test") -> list[ReasoningProblem]:
    """GSM-8k problems from a folder holding `<split>.jsonl` (default <data>/gsm8k) or from a .jsonl file."""
    _check_split(split)
    location = data_path(path, "gsm8k")
    file = location / f"{split}.jsonl" if location.is_dir() else location
    if not file.is_file():
        raise missing(
            f"GSM-8k {split} split", file, f"a folder holding {split}.jsonl (or the .jsonl file itself)", "gsm8k"
        )
    problems = []
    for number, record in enumerate(read_jsonl(file)):
        where = f"'{file}' record {number}"
        require_keys(record, ("question", "answer"), where)
        answer = gsm8k_answer(record["answer"])
        if answer is None:
            raise _no_answer(where)
        problems.append(
            ReasoningProblem(
                id=f"{split}/{number}",
                dataset="gsm8k",
                question=record["question"],
                solution=record["answer"],
                answer=answer,
            )
        )
    return problems


def _math_problem(record: dict, problem_id: str, subject: str, where: str) -> ReasoningProblem:
    require_keys(record, ("problem", "level", "solution"), where)
    level = re.fullmatch(r"Level (\d)", str(record["level"]))
    if last_boxed(record["solution"]) is None:
        raise _no_answer(where)
    return ReasoningProblem(
        id=problem_id,
        dataset="math",
        question=record["problem"],
        solution=record["solution"],
        answer=math_answer(record["solution"]),
        level=int(level.group(1)) if level else None,
        subject=subject,
    )


def _natural_key(path: Path) -> tuple[str, int, str]:
    return (path.parent.name, int(path.stem) if path.stem.isdigit() else -1, path.stem)


def load_math(path: str | os.PathLike | None = None, split: Split = "test") -> list[ReasoningProblem]:
    """MATH problems from `<path>/<split>.jsonl`, a .jsonl file, or the original `<path>/<split>/<subject>/*.json` tree.

    Default path: <data>/math. Problems come in the order of the JSONL file, or sorted by
    subject and number for the tree.
    """
    _check_split(split)
    location = data_path(path, "math")
    expected = f"a folder holding {split}.jsonl or {split}/<subject>/<id>.json (or a .jsonl file)"
    if location.is_file():
        jsonl = location
    elif (location / f"{split}.jsonl").is_file():
        jsonl = location / f"{split}.jsonl"
    elif (location / split).is_dir():
        files = sorted((location / split).glob("*/*.json"), key=_natural_key)
        if not files:
            raise missing(f"MATH {split} split", location / split, expected, "math")
        return [
            _math_problem(read_json(f), f"{split}/{f.parent.name}/{f.stem}", f.parent.name, f"'{f}'") for f in files
        ]
    else:
        raise missing(f"MATH {split} split", location, expected, "math")
    problems = []
    for number, record in enumerate(read_jsonl(jsonl)):
        where = f"'{jsonl}' record {number}"
        problem_id = str(record.get("id", f"{split}/{number}"))
        subject = record.get("subject") or (problem_id.split("/")[1] if problem_id.count("/") == 2 else None)
        problems.append(_math_problem(record, problem_id, subject, where))
    return problems
