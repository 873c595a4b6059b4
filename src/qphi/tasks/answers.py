"""Final answers of GSM-8k and MATH rationales: extraction and comparison (SPEC §4.4), two ways.

**Strict** (the paper's rule, and the default): the answer where the prompt asks for it — after
the last '####' (GSM-8k) or in the last \\boxed{} (MATH) — normalised and compared as strings.
**Flexible**: the answer also from a 'The answer is …' ending (and from a box for GSM-8k),
compared by `math-verify`, which parses both sides into sympy and tests equality, so
2\\sqrt{2} = \\sqrt{8}, \\frac{\\sqrt2}{2} = \\frac1{\\sqrt2}, 10^{-1} = 0.1 and 1{,}000 = 1000,
which the string normaliser misses. Reports give both accuracies side by side.

Strict normalisation. GSM-8k: the number after the last '####', with ',', '$', '%' and trailing units dropped.
MATH: the content of the last \\boxed{...} / \\fbox{...}, rewritten to a canonical string in
the spirit of Hendrycks et al.'s `is_equiv` normaliser — spacing, \\left/\\right, \\dfrac,
\\text{...} and units, degrees, dollars and percent signs go; '\\frac12' gets its braces; and
any plain number (1,000 / 0.5 / .5 / 1/2 / \\frac{2}{4}) becomes one exact form (1000 /
\\frac{1}{2}), so equal values compare equal. Normalisation runs to a fixed point, which
makes it idempotent.
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction
from typing import Literal

Dataset = Literal["gsm8k", "math"]

# --- GSM-8k ----------------------------------------------------------------------------------

_THOUSANDS_COMMA = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_DECIMAL = re.compile(r"-?\d+(?:\.\d+)?")


def normalize_gsm8k_answer(text: str) -> str | None:
    """The first number in `text` as a canonical string ('1,080' → '1080', '$18.00' → '18'); None if there is none."""
    cleaned = _THOUSANDS_COMMA.sub("", text.replace("$", "").replace("%", ""))
    match = _DECIMAL.search(cleaned)
    if match is None:
        return None
    value = Decimal(match.group())
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def gsm8k_answer(text: str) -> str | None:
    """The normalised number after the last '####' of a rationale; None without '####' or a number after it."""
    marker = text.rfind("####")
    return None if marker < 0 else normalize_gsm8k_answer(text[marker + 4 :])


# --- MATH: extraction ------------------------------------------------------------------------

_BOXED = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])")


def last_boxed(text: str) -> str | None:
    """Raw content of the last \\boxed{...} or \\fbox{...} (braces nested), or the token of '\\boxed 5'.

    None if there is no box or its braces never close.
    """
    matches = list(_BOXED.finditer(text))
    if not matches:
        return None
    rest = text[matches[-1].end() :]
    stripped = rest.lstrip(" ")
    if not stripped.startswith("{"):
        token = re.match(r"[^\s$]+", stripped)
        return token.group() if token else None
    depth = 0
    for i, char in enumerate(stripped):
        if char in "{}" and i > 0 and stripped[i - 1] == "\\":
            continue
        depth += 1 if char == "{" else -1 if char == "}" else 0
        if depth == 0:
            return stripped[1:i]
    return None


# --- MATH: normalisation ---------------------------------------------------------------------

# spacing commands; a LaTeX line break '\\\\' is matched first so that its second backslash is never read as '\\ '
_SPACING = re.compile(r"(\\\\)|\\[!,:; >]|\\q?quad(?![a-zA-Z])|\\displaystyle(?![a-zA-Z])|~")
_FRAC_VARIANT = re.compile(r"\\[dtc]frac(?![a-zA-Z])")
_LEFT_RIGHT = re.compile(r"\\(?:left|right)(?![a-zA-Z])")
_DEGREES = re.compile(r"\^\{\\circ\}|\^\\circ(?![a-zA-Z])|°")
_TEXT_COMMAND = r"\\(?:text|textbf|textit|textrm|textnormal|mbox|mathrm|mathbf|operatorname)"
_UNIT_WITH_SPACE = re.compile(_TEXT_COMMAND + r"\{\s")
_TRAILING_TEXT = re.compile(r"(.*\d.*?)" + _TEXT_COMMAND + r"\{[^{}]*\}(?:\^\{?\d\}?)?")
_TEXT_GROUP = re.compile(_TEXT_COMMAND + r"\{([^{}]*)\}")
_SQRT_DIGIT = re.compile(r"\\sqrt(\d)")
# \frac12, \frac1{2}, \frac{1}2: a one-character argument gets braces
_FRAC_BOTH_BARE = re.compile(r"\\frac([^{}\\])([^{}\\])")
_FRAC_FIRST_BARE = re.compile(r"\\frac([^{}\\])\{")
_FRAC_SECOND_BARE = re.compile(r"\\frac(\{[^{}]*\})([^{}\\])")
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_PLAIN_NUMBER = re.compile(r"\d+(?:\.\d+)?|\.\d+")
_LATEX_FRACTION = re.compile(r"\\frac\{(-?\d+)\}\{(-?\d+)\}")
_SLASH_FRACTION = re.compile(r"(\d+)/(\d+)")


def _drop_units(s: str) -> str:
    """Cut '\\text{ cm}'-style units after a number; unwrap the remaining \\text{...} groups."""
    unit = _UNIT_WITH_SPACE.search(s)
    if unit and re.search(r"\d", s[: unit.start()]):
        s = s[: unit.start()]
    trailing = _TRAILING_TEXT.fullmatch(s)
    if trailing:
        s = trailing.group(1)
    return _TEXT_GROUP.sub(r"\1", s)


def _drop_variable(s: str) -> str:
    """'x = 5' → '5' when the left side is a short name."""
    parts = s.split("=")
    return parts[1] if len(parts) == 2 and len(parts[0].strip()) <= 2 else s


def _canonical_number(s: str) -> str:
    """An exact rational written as an integer or a reduced '\\frac{p}{q}'; anything else unchanged."""
    negative = s.startswith("-")
    body = s[1:] if negative else s
    value = None
    if _PLAIN_NUMBER.fullmatch(body):
        value = Fraction(body)
    elif (m := _LATEX_FRACTION.fullmatch(body) or _SLASH_FRACTION.fullmatch(body)) and int(m.group(2)) != 0:
        value = Fraction(int(m.group(1)), int(m.group(2)))
    if value is None:
        return s
    value = -value if negative else value
    if value.denominator == 1:
        return str(value.numerator)
    sign = "-" if value < 0 else ""
    return f"{sign}\\frac{{{abs(value.numerator)}}}{{{value.denominator}}}"


def _normalize_once(s: str) -> str:
    s = _SPACING.sub(lambda m: m.group(1) or "", s.replace("\n", "").strip())
    s = _LEFT_RIGHT.sub("", _FRAC_VARIANT.sub(r"\\frac", s))
    s = _DEGREES.sub("", s)
    s = s.replace("\\$", "").replace("$", "").replace("\\%", "").replace("%", "")
    s = _drop_variable(_drop_units(s))
    s = _SQRT_DIGIT.sub(r"\\sqrt{\1}", s).replace(" ", "")
    s = _FRAC_BOTH_BARE.sub(r"\\frac{\1}{\2}", s)
    s = _FRAC_FIRST_BARE.sub(r"\\frac{\1}{", s)
    s = _FRAC_SECOND_BARE.sub(r"\\frac\1{\2}", s)
    s = s.replace("{.", "{0.").rstrip(".")
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    return _canonical_number(s)


def normalize_math_answer(answer: str) -> str:
    """A canonical string for comparing MATH answers; idempotent."""
    for _ in range(32):
        normalized = _normalize_once(answer)
        if normalized == answer:
            break
        answer = normalized
    return answer


def math_answer(text: str) -> str | None:
    """The normalised last boxed answer of a MATH rationale; None if there is none or it is empty."""
    boxed = last_boxed(text)
    if boxed is None:
        return None
    return normalize_math_answer(boxed) or None


# --- flexible: lenient extraction, math-verify equivalence ------------------------------------

_ANSWER_PHRASE = re.compile(r"\banswer\s*(?:is|:|=)\s*:?", re.IGNORECASE)
_SENTENCE_END = re.compile(r"\.(?:\s|$)|\n")
_MATH_MODE = re.compile(r"(?<!\\)\$|\\\(|\\\[")  # an unescaped $, \( or \[


def flexible_answer(text: str, dataset: Dataset) -> str | None:
    """The raw final answer of a rationale, found leniently: after the last '####' (GSM-8k), else in
    the last \\boxed{}, else in the sentence after the last 'answer is' / 'answer:'; None if none."""
    marker = text.rfind("####") if dataset == "gsm8k" else -1
    if marker >= 0 and text[marker + 4 :].strip():
        return text[marker + 4 :].strip()
    boxed = last_boxed(text)
    if boxed and boxed.strip():
        return boxed
    phrases = list(_ANSWER_PHRASE.finditer(text))
    if not phrases:
        return None
    rest = text[phrases[-1].end() :].strip()
    return rest[: m.start()] if (m := _SENTENCE_END.search(rest)) else rest or None


def _for_math_verify(answer: str, dataset: Dataset) -> str:
    """GSM-8k answers are plain numbers whose '$' is a dollar sign; MATH answers are LaTeX, put in
    math mode unless they already are."""
    if dataset == "gsm8k":
        return answer.replace("$", "")
    return answer if _MATH_MODE.search(answer) else f"${answer}$"


def answers_equivalent(predicted: str | None, gold: str | None, dataset: Dataset) -> bool:
    """Whether two raw answers are mathematically equal by `math-verify`; None never matches."""
    if predicted is None or gold is None:
        return False
    from math_verify import parse, verify

    return bool(verify(parse(_for_math_verify(gold, dataset)), parse(_for_math_verify(predicted, dataset))))


# --- both ------------------------------------------------------------------------------------


def extract_answer(text: str, dataset: Dataset) -> str | None:
    """The normalised final answer of a rationale, None if it gives none."""
    return gsm8k_answer(text) if dataset == "gsm8k" else math_answer(text)


def answers_match(predicted: str | None, gold: str | None, dataset: Dataset) -> bool:
    """Whether two answers (extracted, normalised or not) are equal after normalisation; None never matches."""
    if predicted is None or gold is None:
        return False
    normalize = normalize_gsm8k_answer if dataset == "gsm8k" else normalize_math_answer
    a, b = normalize(predicted), normalize(gold)
    return a is not None and a != "" and a == b
