"""Scoring texts token by token with a trained PHi layer inside a pretrained LLM: tokens.jsonl,
summary.json and heatmap.html."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, model_validator

from qphi.configuration import Config
from qphi.errors import QPhiError
from qphi.evaluation.scoring import Chat, ScoreSummary, TokenScores, score_texts, summarize
from qphi.experiments.llm_run import load_llm_run
from qphi.io import write_json, write_jsonl, write_text
from qphi.reports.heatmap import heatmap_html
from qphi.tasks.data_files import read_jsonl


class ScoreConfig(Config):
    run_dir: Path  # the training run of the PHi layer
    model: str | None = None  # the base model; must be the run's (None: the run's)
    text: Path | None = None  # a UTF-8 text file, scored as one text
    jsonl: Path | None = None  # one {"text"} or {"user", "assistant"[, "system"]} object per line
    out: Path
    max_tokens: int | None = Field(None, ge=1)  # score only the first N scored tokens of each text
    batch_size: int = Field(4, ge=1)
    device: str = "cpu"

    @model_validator(mode="after")
    def _one_source(self) -> ScoreConfig:
        if (self.text is None) == (self.jsonl is None):
            raise ValueError("give exactly one of text (--text) and jsonl (--jsonl): the texts to score")
        return self


@dataclass(frozen=True)
class TokenRecord:
    """A line of tokens.jsonl. PHi belongs to the latent computed after reading the token;
    nll_nats is −ln p(next token | tokens up to this one), None at a text's last token."""

    text: int
    position: int
    token: str
    token_id: int
    scored: bool
    phi_nats: float
    phi_bits: float
    phi_per_stage_nats: list[float]
    nll_nats: float | None
    base_nll_nats: float | None


@dataclass(frozen=True, kw_only=True)
class TextScore(ScoreSummary):
    title: str


@dataclass(frozen=True)
class ScoreResult:
    """summary.json."""

    run: str
    step: int
    model: str
    phi_after: int
    bottleneck: str
    overall: ScoreSummary
    texts: list[TextScore]


def read_inputs(text: Path | None, jsonl: Path | None) -> tuple[list[str | Chat], list[str]]:
    """The texts to score and their titles. A byte-order mark that starts a text file is not
    part of the text (it would be scored as a token)."""
    if text is not None:
        try:
            content = text.read_bytes().decode("utf-8-sig")
        except OSError as e:
            raise QPhiError(f"cannot read '{text}' ({e.strerror}): pass a readable text file") from None
        except UnicodeDecodeError as e:
            raise QPhiError(f"'{text}' is not UTF-8 text (byte {e.start}): convert it to UTF-8") from None
        if not content.strip():
            raise QPhiError(f"'{text}' is empty: give it some text to score")
        return [content], [text.name]
    if not jsonl.is_file():
        raise QPhiError(f"'{jsonl}' not found: pass a .jsonl file with one text or chat per line")
    items: list[str | Chat] = []
    for number, record in enumerate(read_jsonl(jsonl), start=1):
        for key in ("text", "user", "assistant", "system"):
            _check_encodable(record.get(key), f"'{jsonl}' line {number}, '{key}'")
        if isinstance(record.get("text"), str):
            items.append(record["text"])
        elif isinstance(record.get("user"), str) and isinstance(record.get("assistant"), str):
            items.append(Chat(record["user"], record["assistant"], record.get("system")))
        else:
            raise QPhiError(
                f"'{jsonl}' line {number} has neither a 'text' string nor 'user' and 'assistant' strings: give it one of them"
            )
        if not (record.get("text") or record.get("assistant") or "").strip():
            raise QPhiError(f"'{jsonl}' line {number} has an empty text: remove it or give it text")
    if not items:
        raise QPhiError(f"'{jsonl}' holds no texts: add one JSON object per line")
    return items, [f"{jsonl.name}:{i + 1}" for i in range(len(items))]


def _check_encodable(value: object, where: str) -> None:
    """JSON may spell half a UTF-16 surrogate pair (\\ud800), which is no character: the tokenizer
    and every file written would fail on it."""
    if not isinstance(value, str):
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise QPhiError(
            f"{where} holds a lone surrogate \\u{ord(value[e.start]):04x} at character {e.start}, which is not text: "
            "remove it, or write the whole character it was half of"
        ) from None


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def token_records(scores: list[TokenScores]) -> list[TokenRecord]:
    """One record per token of every text."""
    return [
        TokenRecord(
            text=index,
            position=t,
            token=piece,
            token_id=int(s.token_ids[t]),
            scored=bool(s.mask[t]),
            phi_nats=float(s.phi[t]),
            phi_bits=float(s.phi[t]) / math.log(2),
            phi_per_stage_nats=[float(v) for v in s.phi_per_stage[:, t]],
            nll_nats=_finite(float(s.nll[t])),
            base_nll_nats=None if s.base_nll is None else _finite(float(s.base_nll[t])),
        )
        for index, s in enumerate(scores)
        for t, piece in enumerate(s.pieces)
    ]


def run(config: ScoreConfig) -> ScoreResult:
    """Score the texts; write tokens.jsonl, summary.json and heatmap.html into `config.out`."""
    items, titles = read_inputs(config.text, config.jsonl)
    run_config, model, tokenizer, step = load_llm_run(config.run_dir, config.model, config.device)
    scores = score_texts(
        model, tokenizer, items, max_tokens=config.max_tokens, batch_size=config.batch_size, progress=True
    )
    write_jsonl(config.out / "tokens.jsonl", token_records(scores))
    result = ScoreResult(
        run=str(config.run_dir),
        step=step,
        model=run_config.model.pretrained,
        phi_after=run_config.model.phi_after,
        bottleneck=run_config.phi.bottleneck.name,
        overall=summarize(scores),
        texts=[TextScore(**vars(s.summary()), title=t) for t, s in zip(titles, scores, strict=True)],
    )
    write_json(config.out / "summary.json", result)
    heading = f"PHi of {result.model} (layer after block {result.phi_after}, {result.bottleneck})"
    write_text(config.out / "heatmap.html", heatmap_html(scores, titles, heading=heading))
    return result
