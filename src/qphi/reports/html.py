"""A self-contained HTML report: tables and figures inlined, readable offline."""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from pathlib import Path

from qphi.io import write_text

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:1em 0;font-size:.92em}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f4f4f4}
figure{display:inline-block;margin:1em 1em 1em 0}figcaption{font-size:.85em;color:#555}
img{max-width:100%}code,pre{background:#f6f6f6;padding:.1em .3em}.note{color:#555;font-size:.9em}
"""


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figure(path: str | os.PathLike, caption: str) -> str:
    """An <img> with the PNG inlined as a data URI (no file the page depends on), and a link to
    the SVG beside it when there is one (a page in the same folder finds it)."""
    png = Path(path)
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    svg = png.with_suffix(".svg")
    link = f' (<a href="{html.escape(svg.name)}">SVG</a>)' if svg.is_file() else ""
    return (
        f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(caption)}{link}</figcaption></figure>"
    )


def page(title: str, sections: Sequence[tuple[str, str]], intro: str = "") -> str:
    """sections: (heading, inner HTML)."""
    body = "".join(f"<h2>{html.escape(h)}</h2>{inner}" for h, inner in sections)
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{intro}{body}</body></html>\n"
    )


def write_page(path: str | os.PathLike, title: str, sections: Sequence[tuple[str, str]], intro: str = "") -> Path:
    return write_text(path, page(title, sections, intro))


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "–" if value is None else str(value)
