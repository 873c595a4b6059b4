"""Final-answer extraction and normalisation for GSM-8k and MATH."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qphi.tasks.reasoning import (
    answers_match,
    gsm8k_answer,
    last_boxed,
    load_gsm8k,
    load_math,
    math_answer,
    normalize_gsm8k_answer,
    normalize_math_answer,
)

LATEX_PIECES = [
    "\\frac", "\\dfrac", "\\tfrac", "{", "}", "1", "2", "0", "5", "12", ".", ",", " ", "x", "=", "-", "/",
    "\\text{", "\\text{ ", "\\mbox{", "cm", "\\left(", "\\right)", "(", ")", "^\\circ", "^{\\circ}", "^2",
    "\\$", "$", "%", "\\%", "\\sqrt", "\\!", "\\,", "\\\\", "\\", "\\pi", "\\infty", "~", "\n",
]  # fmt: skip
LATEX_LIKE = st.lists(st.sampled_from(LATEX_PIECES), max_size=14).map("".join)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("\\frac12", "\\frac{1}{2}"),
        ("\\dfrac{1}{2}", "\\frac{1}{2}"),
        ("\\tfrac 1 2", "\\frac{1}{2}"),
        ("0.5", "\\frac{1}{2}"),
        (".5", "\\frac{1}{2}"),
        ("1/2", "\\frac{1}{2}"),
        ("\\frac{2}{4}", "\\frac{1}{2}"),
        ("\\frac{-1}{2}", "-\\frac{1}{2}"),
        ("\\frac1{72}", "\\frac{1}{72}"),
        ("\\frac{3}2", "\\frac{3}{2}"),
        ("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt{3}}{2}"),
        ("\\sqrt3", "\\sqrt{3}"),
        ("10\\text{ cm}", "10"),
        ("5\\text{ inches}^2", "5"),
        ("4\\mbox{ feet}", "4"),
        ("\\text{(C)}", "(C)"),
        ("\\text{Devon}", "Devon"),
        ("x = 5", "5"),
        ("30^\\circ", "30"),
        ("30^{\\circ}", "30"),
        ("\\$1,000", "1000"),
        ("10{,}000", "10{,}000"),
        ("1\\,000", "1000"),
        ("50\\%", "50"),
        ("3.", "3"),
        ("5.0", "5"),
        ("\\left( 1, 2 \\right)", "(1,2)"),
        ("(1,2)", "(1,2)"),
        ("\\begin{pmatrix} 6 \\\\ 3 \\end{pmatrix}", "\\begin{pmatrix}6\\\\3\\end{pmatrix}"),
        ("\\infty", "\\infty"),
        ("\\frac{\\frac12}{3}", "\\frac{\\frac{1}{2}}{3}"),
    ],
)
def test_math_normalisation_cases(raw, expected):
    assert normalize_math_answer(raw) == expected


@pytest.mark.parametrize(
    ("text", "boxed"),
    [
        ("so $\\boxed{\\frac{1}{\\sqrt{2}}}$.", "\\frac{1}{\\sqrt{2}}"),
        ("\\boxed{1} then \\boxed{\\{2, 3\\}}", "\\{2, 3\\}"),
        ("the answer is $\\boxed 5$.", "5"),
        ("\\fbox{7}", "7"),
        ("\\boxed{\\text{(A)}}", "\\text{(A)}"),
        ("no box here", None),
        ("\\boxed{never closed", None),
    ],
)
def test_last_boxed(text, boxed):
    assert last_boxed(text) == boxed


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("... \n#### 18", "18"),
        ("#### 1,080", "1080"),
        ("#### $18.00", "18"),
        ("#### -5 dollars", "-5"),
        ("#### 50%", "50"),
        ("#### 3.50", "3.5"),
        ("#### 12 \n#### 13 apples", "13"),
        ("The answer is 18.", None),
        ("####", None),
    ],
)
def test_gsm8k_answer(text, answer):
    assert gsm8k_answer(text) == answer


def test_answers_match():
    assert answers_match("0.5", "\\frac{1}{2}", "math")
    assert answers_match("\\dfrac{1}{2}", "1/2", "math")
    assert not answers_match("\\frac{1}{3}", "\\frac{1}{2}", "math")
    assert answers_match("1,000", "1000", "gsm8k")
    assert not answers_match("100", "1000", "gsm8k")
    assert not answers_match(None, "5", "gsm8k") and not answers_match("", "", "math")


@settings(max_examples=300, deadline=None)
@given(st.one_of(LATEX_LIKE, st.text(max_size=20)))
def test_normalisation_is_idempotent(text):
    once = normalize_math_answer(text)
    assert normalize_math_answer(once) == once
    gsm = normalize_gsm8k_answer(text)
    assert gsm is None or normalize_gsm8k_answer(gsm) == gsm


def test_every_real_test_problem_has_a_gold_answer(data_dir):
    gsm8k = load_gsm8k(data_dir / "gsm8k", split="test")
    math = load_math(data_dir / "math", split="test")
    assert len(gsm8k) == 1319 and len(math) == 5000
    assert all(p.answer and p.answer.lstrip("-").isdigit() for p in gsm8k)
    assert all(p.answer for p in math)
    for problem in math[:500]:
        assert math_answer(problem.solution) == problem.answer
        assert problem.is_correct(f"... so the answer is $\\boxed{{{last_boxed(problem.solution)}}}$.")
    assert sum(math_answer(p.solution) == "\\frac{1}{2}" for p in math) > 5


# Pairs of equal MATH answers written differently; and pairs that differ.
EQUAL_MATH_ANSWERS = [
    ("2\\sqrt{2}", "\\sqrt{8}"),
    ("\\frac{\\sqrt2}{2}", "\\frac1{\\sqrt2}"),
    ("10^{-1}", "0.1"),
    ("1{,}000", "1000"),
    ("\\dfrac{3}{4}", "0.75"),
    ("x=5", "5"),
    ("(1,2)", "(1, 2)"),
    ("\\{1,2\\}", "\\{2,1\\}"),
    ("[-1,3)", "[-1, 3)"),
    ("90^\\circ", "90"),
    ("\\pi/2", "\\frac{\\pi}{2}"),
    ("5\\%", "5"),
    ("\\$10", "10"),
    ("3 \\text{ cm}", "3"),
    ("2x+1", "1+2x"),
    ("x^2-1", "(x-1)(x+1)"),
    ("\\frac{6}{8}", "\\frac{3}{4}"),
]
DIFFERENT_MATH_ANSWERS = [("\\frac{1}{3}", "\\frac{1}{2}"), ("3", "4"), ("\\sqrt{8}", "2\\sqrt{3}"), ("(1,2)", "(2,1)")]


def test_flexible_checking_finds_equal_answers_the_strict_rule_misses():
    from qphi.tasks.answers import answers_equivalent

    assert all(answers_equivalent(a, b, "math") for a, b in EQUAL_MATH_ANSWERS)
    strict = sum(answers_match(a, b, "math") for a, b in EQUAL_MATH_ANSWERS)
    assert strict <= 10  # measured: 9 of the 17
    for a, b in DIFFERENT_MATH_ANSWERS:
        assert not answers_equivalent(a, b, "math") and not answers_match(a, b, "math")


def test_gsm8k_answers_from_an_answer_is_ending_count_only_when_flexible():
    from qphi.tasks.reasoning import ReasoningProblem

    problem = ReasoningProblem("p", "gsm8k", "How much?", "9 * 2 = 18\n#### 18", "18")
    for rationale in ("She earns 9 * 2 = 18 dollars. The answer is 18.", "So the answer: $18\n", "... \\boxed{18}"):
        assert problem.is_correct(rationale, flexible=True) and not problem.is_correct(rationale)
    assert problem.is_correct("#### 18") and problem.is_correct("#### 18", flexible=True)
    assert not problem.is_correct("The answer is 17.", flexible=True)
    assert not problem.is_correct("no answer here", flexible=True)


def test_flexible_math_answers_against_real_gold_answers(data_dir):
    for problem in load_math(data_dir / "math", split="test")[:150]:
        boxed = last_boxed(problem.solution)
        assert problem.is_correct(f"Therefore the final answer is ${boxed}$.", flexible=True), problem.id
