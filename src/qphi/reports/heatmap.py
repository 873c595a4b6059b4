"""A self-contained HTML page that colours every token by its PHi (or next-token loss).

The page works offline: inline CSS and a few lines of inline JavaScript, no external
scripts, fonts or images. Each token is a `<span>` whose `title` (the tooltip on hover) and
`data-*` attributes hold its values; both colourings are computed here and stored as CSS
variables, so switching views only swaps a class (and the PHi view shows without
JavaScript). Token texts are HTML-escaped.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import numpy as np

from qphi.evaluation.scoring import TokenScores

_LOW = np.array([255, 255, 255])
_HIGH = {"phi": np.array([214, 39, 40]), "nll": np.array([31, 119, 180])}

_STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5em;color:#222;max-width:70em}
.controls{position:sticky;top:0;background:#fff;padding:.5em 0;border-bottom:1px solid #ddd;z-index:1}
.text{font-family:ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap;line-height:1.6;
border:1px solid #eee;padding:.8em;margin:.5em 0 1.5em}
.t{border-radius:2px}
.t.off{color:#999}
body.view-phi .t.on{background:var(--phi)}
body.view-nll .t.on{background:var(--nll)}
.legend{display:inline-block;vertical-align:middle;width:10em;height:.8em;margin:0 .4em;border:1px solid #ccc}
.legend.phi{background:linear-gradient(to right,#fff,rgb(214,39,40))}
.legend.nll{background:linear-gradient(to right,#fff,rgb(31,119,180))}
body.view-phi .for-nll,body.view-nll .for-phi{display:none}
.meta{color:#555;font-size:.9em}
"""

_SCRIPT = """
document.querySelectorAll('input[name=view]').forEach(function (r) {
  r.addEventListener('change', function () { document.body.className = 'view-' + r.value; });
});
"""


def _colour(value: float, low: float, high: float, kind: str) -> str:
    if not math.isfinite(value):
        return "transparent"
    x = 0.0 if high <= low else min(1.0, max(0.0, (value - low) / (high - low)))
    r, g, b = (_LOW + x * (_HIGH[kind] - _LOW)).round().astype(int)
    return f"rgb({r},{g},{b})"


def _range(values: np.ndarray) -> tuple[float, float]:
    """The 2nd–98th percentile of the finite values: one outlier does not wash out the page."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(finite, [2, 98])
    return float(low), float(high)


def _fmt(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else "n/a"


def heatmap_html(scores: Sequence[TokenScores], titles: Sequence[str] | None = None, heading: str = "PHi") -> str:
    """The page for several scored texts; one colour scale per view, shared by all texts."""
    titles = list(titles) if titles is not None else [f"text {i + 1}" for i in range(len(scores))]
    phi_all = np.concatenate([s.phi[s.mask] for s in scores]) if scores else np.zeros(0)
    nll_all = np.concatenate([s.nll[s.mask] for s in scores]) if scores else np.zeros(0)
    phi_range, nll_range = _range(phi_all), _range(nll_all)
    sections = []
    for index, (s, title) in enumerate(zip(scores, titles, strict=True)):
        spans = []
        for t, piece in enumerate(s.pieces):
            phi, nll = float(s.phi[t]), float(s.nll[t])
            tip = f"PHi {_fmt(phi)} nats ({_fmt(phi / math.log(2))} bits) · next-token loss {_fmt(nll)} nats"
            if not s.mask[t]:
                tip = "not scored · " + tip
            spans.append(
                f'<span class="t {"on" if s.mask[t] else "off"}" data-i="{t}" data-phi="{_fmt(phi)}" '
                f'data-nll="{_fmt(nll)}" title="{html.escape(tip)}" '
                f'style="--phi:{_colour(phi, *phi_range, "phi")};--nll:{_colour(nll, *nll_range, "nll")}">'
                f"{html.escape(piece)}</span>"
            )
        summary = s.summary()
        meta = (
            f"{summary['n_tokens']} scored tokens · mean PHi {summary['phi_mean']:.3f} nats "
            f"({summary['phi_bits_mean']:.3f} bits) · mean next-token loss {summary['nll_mean']:.3f} nats"
        )
        sections.append(
            f'<section id="text-{index}"><h2>{html.escape(title)}</h2><p class="meta">{html.escape(meta)}</p>'
            f'<div class="text">{"".join(spans)}</div></section>'
        )
    controls = (
        '<div class="controls">colour by: '
        '<label><input type="radio" name="view" value="phi" checked> PHi</label> '
        '<label><input type="radio" name="view" value="nll"> next-token loss</label> '
        f'<span class="for-phi">{phi_range[0]:.2f}<span class="legend phi"></span>{phi_range[1]:.2f} nats</span>'
        f'<span class="for-nll">{nll_range[0]:.2f}<span class="legend nll"></span>{nll_range[1]:.2f} nats</span>'
        " · hover a token for its values; grey tokens are not scored</div>"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(heading)}</title><style>{_STYLE}</style></head>"
        f'<body class="view-phi"><h1>{html.escape(heading)}</h1>{controls}{"".join(sections)}'
        f"<script>{_SCRIPT}</script></body></html>\n"
    )
