"""`qphi score --phi RUN_DIR (--text FILE | --jsonl FILE) --out DIR`: PHi and next-token loss per token."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from qphi.cli.llm_run import load_llm_run
from qphi.cli.numbers import at_least
from qphi.errors import QPhiError
from qphi.evaluation.scoring import Chat, TokenScores, score_texts, summarize
from qphi.io import write_json, write_text
from qphi.reports.heatmap import heatmap_html
from qphi.tasks.data_files import read_jsonl


def add_parser(sub: argparse._SubParsersAction, name: str, summary: str) -> None:
    p = sub.add_parser(
        name,
        help=summary,
        description="Writes tokens.jsonl (per token: text, PHi in nats and bits, per stage, next-token loss, and the "
        "base model's next-token loss), summary.json and heatmap.html (a self-contained page). A --jsonl line is "
        '{"text": ...} (all tokens scored) or {"user": ..., "assistant": ...} (chat template; assistant scored). '
        "Texts longer than the model's context are refused unless --max-tokens cuts them.",
    )
    p.add_argument("--phi", type=Path, required=True, metavar="RUN_DIR", help="training run of the PHi layer")
    p.add_argument("--model", help="base model (default: the run's; must match it)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", type=Path, help="a UTF-8 text file, scored as one text")
    source.add_argument("--jsonl", type=Path, help="one text or chat per line")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--max-tokens", type=at_least(1), help="score only the first N scored tokens of each text")
    p.add_argument("--batch-size", type=at_least(1), default=4)
    p.add_argument("--device", default="cpu")
    p.set_defaults(run=run)


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


def _value(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def token_records(scores: list[TokenScores]) -> list[dict]:
    """One JSON-ready record per token (None where a loss is undefined)."""
    records = []
    for index, s in enumerate(scores):
        for t, piece in enumerate(s.pieces):
            phi = float(s.phi[t])
            records.append(
                {
                    "text": index,
                    "position": t,
                    "token": piece,
                    "token_id": int(s.token_ids[t]),
                    "scored": bool(s.mask[t]),
                    "phi_nats": phi,
                    "phi_bits": phi / math.log(2),
                    "phi_per_stage_nats": [float(v) for v in s.phi_per_stage[:, t]],
                    "nll_nats": _value(float(s.nll[t])),
                    "base_nll_nats": None if s.base_nll is None else _value(float(s.base_nll[t])),
                }
            )
    return records


def run(args: argparse.Namespace) -> int:
    items, titles = read_inputs(args.text, args.jsonl)
    config, model, tokenizer, step = load_llm_run(args.phi, args.model, args.device)
    scores = score_texts(model, tokenizer, items, max_tokens=args.max_tokens, batch_size=args.batch_size, progress=True)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in token_records(scores))
    write_text(args.out / "tokens.jsonl", lines)
    summary = {
        "run": str(args.phi),
        "step": step,
        "model": config.model.pretrained,
        "phi_after": config.model.phi_after,
        "bottleneck": config.phi.bottleneck.name,
        "overall": summarize(scores),
        "texts": [{"title": t, **s.summary()} for t, s in zip(titles, scores, strict=True)],
    }
    write_json(args.out / "summary.json", summary)
    heading = (
        f"PHi of {config.model.pretrained} (layer after block {config.model.phi_after}, {config.phi.bottleneck.name})"
    )
    write_text(args.out / "heatmap.html", heatmap_html(scores, titles, heading=heading))
    overall = summary["overall"]
    print(
        f"{overall['n_tokens']} tokens: mean PHi {overall['phi_mean']:.3f} nats ({overall['phi_bits_mean']:.3f} bits), "
        f"next-token loss {overall['nll_mean']:.3f} nats"
    )
    print(f"wrote {args.out / 'tokens.jsonl'}, {args.out / 'summary.json'}, {args.out / 'heatmap.html'}")
    return 0
