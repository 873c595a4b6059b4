"""A self-contained HTML page that colours every token by its PHi or by its surprisal.

PHi at token t belongs to the latent computed after reading token t. The surprisal of token t
is −ln p(token_t | tokens_<t), the next-token loss computed at t − 1 moved onto the token it
scores (the first token has none) — the usual surprisal display; `TokenScores.nll` keeps the
training objective's pairing (PHi and next-token loss at the same position).

The page works offline: inline CSS and JavaScript, no external scripts, fonts or images. Each
token is a `<span>` with a thin right edge (its boundary) whose tooltip and `data-*`
attributes hold its values; both colourings are computed here and stored as CSS variables,
so switching views only swaps a class (and the PHi view shows without JavaScript). Beside
each text a table lists every token's values; hovering a token (or a row) shows them above
the text and marks both. Each text downloads as an SVG figure of the current view (tokens
laid out in a fixed-width grid, with its colour scale) and as CSV data. Token texts are
HTML-escaped.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence

import numpy as np

from qphi.evaluation.scoring import TokenScores

_LOW = np.array([255, 255, 255])
_HIGH = {"phi": np.array([214, 39, 40]), "s": np.array([31, 119, 180])}
QUANTITIES = {"phi": "PHi (nats)", "s": "surprisal −ln p(token | tokens before it) (nats)"}

_STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5em;color:#222;max-width:100em}
.controls{position:sticky;top:0;background:#fff;padding:.5em 0;border-bottom:1px solid #ddd;z-index:1}
.controls>div{margin:.2em 0}
#readout{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9em;color:#333;min-height:1.3em}
.pair{display:grid;grid-template-columns:minmax(0,1fr) minmax(18em,26em);gap:1em;align-items:start;margin:.5em 0 1.5em}
.text{font-family:ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap;line-height:1.6;
border:1px solid #eee;padding:.8em}
.t{border-radius:2px;box-shadow:inset -1px 0 0 rgba(0,0,0,.22)}
.t.off{color:#999}
.t.hl{outline:2px solid #222}
body.view-phi .t.on{background:var(--phi)}
body.view-s .t.on{background:var(--s)}
.values{max-height:32em;overflow:auto;border:1px solid #eee;font-size:.85em}
.values table{border-collapse:collapse;width:100%}
.values th{position:sticky;top:0;background:#f6f6f6;text-align:right;padding:.2em .5em}
.values td{text-align:right;padding:.1em .5em;font-variant-numeric:tabular-nums}
.values td:nth-child(2){text-align:left;font-family:ui-monospace,Menlo,Consolas,monospace;white-space:pre}
.values tr.off{color:#999}
.values tr.hl{background:#ffe9a8}
.legend{display:inline-block;vertical-align:middle;width:10em;height:.8em;margin:0 .4em;border:1px solid #ccc}
.legend.phi{background:linear-gradient(to right,#fff,rgb(214,39,40))}
.legend.s{background:linear-gradient(to right,#fff,rgb(31,119,180))}
body.view-phi .for-s,body.view-s .for-phi{display:none}
.meta{color:#555;font-size:.9em}
"""

_SCRIPT = r"""
(function () {
  var body = document.body, readout = document.getElementById('readout');
  var COLS = 100, CW = 8.4, LH = 20, PAD = 12;
  function view() { return body.classList.contains('view-s') ? 's' : 'phi'; }
  document.querySelectorAll('input[name=view]').forEach(function (r) {
    r.addEventListener('change', function () { body.className = 'view-' + r.value; });
  });
  function esc(text) {
    return text.replace(/[\x00-\x08\x0b\x0c\x0e-\x1f]/g, '\ufffd').replace(/&/g, '&amp;')
      .replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
  }
  function show(section, i) {
    section.ownerDocument.querySelectorAll('.hl').forEach(function (e) { e.classList.remove('hl'); });
    var span = section.querySelector('span.t[data-i="' + i + '"]');
    var row = section.querySelector('tr[data-i="' + i + '"]');
    span.classList.add('hl');
    row.classList.add('hl');
    readout.textContent = section.dataset.title + ' · ' + span.title;
    var box = row.closest('.values'), r = row.getBoundingClientRect(), b = box.getBoundingClientRect();
    if (r.top < b.top + r.height || r.bottom > b.bottom) box.scrollTop += r.top - b.top - b.height / 2;
  }
  function svg(section, v) {
    var scale = document.querySelector('.scale.for-' + v).dataset, top = PAD + 2.6 * LH;
    var parts = [], line = 0, col = 0, widest = 0;
    section.querySelectorAll('.text span.t').forEach(function (s) {
      var on = s.classList.contains('on'), fill = on ? s.style.getPropertyValue('--' + v).trim() : 'none';
      var run = [], start = 0;
      function flush() {
        if (run.length) {
          var y = top + line * LH, lead = 0, end = run.length;
          parts.push('<rect x="' + (PAD + start * CW).toFixed(1) + '" y="' + y + '" width="' +
            (run.length * CW).toFixed(1) + '" height="' + LH + '" fill="' + fill + '" stroke="#999" stroke-width="0.4"/>');
          while (lead < end && run[lead] === ' ') lead++;
          while (end > lead && run[end - 1] === ' ') end--;
          if (end > lead) {  // glyphs only: renderers differ in how they lay out edge spaces
            parts.push('<text x="' + (PAD + (start + lead) * CW).toFixed(1) + '" y="' + (y + LH - 6) +
              '" textLength="' + ((end - lead) * CW).toFixed(1) + '" lengthAdjust="spacingAndGlyphs"' +
              (on ? '' : ' fill="#999"') + '>' + esc(run.slice(lead, end).join('')) + '</text>');
          }
        }
        run = [];
        start = col;
      }
      flush();
      Array.from(s.textContent).forEach(function (c) {
        if (c === '\r') return;
        if (c === '\n' || col === COLS) { flush(); line++; col = 0; start = 0; }
        if (c !== '\n') { run.push(c === '\t' ? ' ' : c); col++; widest = Math.max(widest, col); }
      });
      flush();
    });
    var legend = scale.label.length + scale.low.length + scale.high.length + 6 + 120 / CW;
    var width = Math.round(2 * PAD + Math.max(widest, legend) * CW), height = top + (line + 1) * LH + PAD;
    return '<svg xmlns="http://www.w3.org/2000/svg" width="' + width + '" height="' + height + '" viewBox="0 0 ' +
      width + ' ' + height + '" font-family="ui-monospace,Menlo,Consolas,monospace" font-size="14"' +
      ' xml:space="preserve" style="white-space:pre">' +
      '<defs><linearGradient id="scale"><stop offset="0" stop-color="#fff"/><stop offset="1" stop-color="' +
      scale.colour + '"/></linearGradient></defs><rect width="100%" height="100%" fill="#fff"/>' +
      '<text x="' + PAD + '" y="' + (PAD + 14) + '" font-weight="bold">' + esc(section.dataset.title) + '</text>' +
      '<text x="' + PAD + '" y="' + (PAD + LH + 14) + '">' + esc(scale.label + ': ' + scale.low) + '</text>' +
      '<rect x="' + (PAD + (scale.label.length + scale.low.length + 3) * CW).toFixed(1) + '" y="' + (PAD + LH + 3) +
      '" width="120" height="12" fill="url(#scale)" stroke="#999" stroke-width="0.5"/>' +
      '<text x="' + (PAD + (scale.label.length + scale.low.length + 4) * CW + 120).toFixed(1) + '" y="' + (PAD + LH + 14) + '">' +
      esc(scale.high) + '</text>' + parts.join('') + '</svg>\n';
  }
  function csv(section) {
    var lines = ['position,token,scored,phi_nats,surprisal_nats'];
    section.querySelectorAll('.text span.t').forEach(function (s) {
      var token = '"' + s.textContent.replace(/"/g, '""') + '"';
      lines.push([s.dataset.i, token, s.classList.contains('on'), s.dataset.phi, s.dataset.s].join(','));
    });
    return lines.join('\r\n') + '\r\n';
  }
  function save(name, type, content) {
    var a = document.createElement('a');
    a.href = URL.createObjectURL(new Blob([content], {type: type}));
    a.download = name;
    body.appendChild(a);
    a.click();
    a.remove();
  }
  document.querySelectorAll('section').forEach(function (section) {
    section.addEventListener('mouseover', function (e) {
      var item = e.target.closest('[data-i]');
      if (item) show(section, item.dataset.i);
    });
    section.querySelectorAll('button[data-get]').forEach(function (button) {
      button.addEventListener('click', function () {
        var name = section.dataset.file, v = view();
        if (button.dataset.get === 'svg') save(name + '-' + (v === 's' ? 'surprisal' : 'phi') + '.svg', 'image/svg+xml', svg(section, v));
        else save(name + '.csv', 'text/csv', csv(section));
      });
    });
  });
  window.qphiHeatmap = {svg: svg, csv: csv};
})();
"""


def _colour(value: float, low: float, high: float, kind: str) -> str:
    if not math.isfinite(value):
        return "none"
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
    return f"{value:.3f}" if math.isfinite(value) else "none"


def _data(value: float) -> str:
    """A value for the data attributes and the CSV: 6 significant digits, empty where undefined."""
    return f"{value:.6g}" if math.isfinite(value) else ""


def _visible(piece: str) -> str:
    return piece.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥")


def _scale(kind: str, low: float, high: float) -> str:
    r, g, b = _HIGH[kind]
    return (
        f'<span class="scale for-{kind}" data-label="{html.escape(QUANTITIES[kind])}" data-low="{low:.2f}" '
        f'data-high="{high:.2f}" data-colour="rgb({r},{g},{b})">colour scale, {html.escape(QUANTITIES[kind])}: '
        f'{low:.2f}<span class="legend {kind}"></span>{high:.2f} (values beyond are clipped)</span>'
    )


def heatmap_html(scores: Sequence[TokenScores], titles: Sequence[str] | None = None, heading: str = "PHi") -> str:
    """The page for several scored texts; one colour scale per view, shared by all texts."""
    titles = list(titles) if titles is not None else [f"text {i + 1}" for i in range(len(scores))]
    surprisals = [s.surprisal for s in scores]
    ranges = {
        "phi": _range(np.concatenate([s.phi[s.mask] for s in scores]) if scores else np.zeros(0)),
        "s": _range(
            np.concatenate([v[s.mask] for s, v in zip(scores, surprisals, strict=True)]) if scores else np.zeros(0)
        ),
    }
    sections = []
    for index, (s, surprisal, title) in enumerate(zip(scores, surprisals, titles, strict=True)):
        spans, rows = [], []
        for t, piece in enumerate(s.pieces):
            phi, own = float(s.phi[t]), float(surprisal[t])
            state = "on" if s.mask[t] else "off"
            tip = (
                f"token {t}{'' if s.mask[t] else ' (not scored)'} · PHi {_fmt(phi)} nats "
                f"({_fmt(phi / math.log(2))} bits) · surprisal {_fmt(own)} nats"
            )
            spans.append(
                f'<span class="t {state}" data-i="{t}" data-phi="{_data(phi)}" data-s="{_data(own)}" '
                f'title="{html.escape(tip)}" style="--phi:{_colour(phi, *ranges["phi"], "phi")};'
                f'--s:{_colour(own, *ranges["s"], "s")}">{html.escape(piece)}</span>'
            )
            rows.append(
                f'<tr class="{state}" data-i="{t}"><td>{t}</td><td>{html.escape(_visible(piece))}</td>'
                f"<td>{_fmt(phi)}</td><td>{_fmt(own)}</td></tr>"
            )
        summary = s.summary()
        meta = (
            f"{summary.n_tokens} scored tokens · mean PHi {summary.phi_mean:.3f} nats "
            f"({summary.phi_bits_mean:.3f} bits) · mean next-token loss {summary.nll_mean:.3f} nats"
        )
        file = re.sub(r"[^\w.-]+", "_", title).strip("_") or f"text-{index + 1}"
        sections.append(
            f'<section id="text-{index}" data-title="{html.escape(title)}" data-file="{html.escape(file)}">'
            f'<h2>{html.escape(title)}</h2><p class="meta">{html.escape(meta)} · download: '
            '<button type="button" data-get="svg">figure of this view (SVG)</button> '
            '<button type="button" data-get="csv">values (CSV)</button></p>'
            f'<div class="pair"><div class="text">{"".join(spans)}</div><div class="values"><table><thead><tr>'
            "<th>#</th><th>token</th><th>PHi (nats)</th><th>surprisal (nats)</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div></div></section>"
        )
    controls = (
        '<div class="controls"><div>colour by: '
        '<label><input type="radio" name="view" value="phi" checked> PHi</label> '
        '<label><input type="radio" name="view" value="s"> surprisal</label>'
        " · grey tokens are not scored; hover a token or a row for its values</div>"
        f'<div id="scale">{_scale("phi", *ranges["phi"])}{_scale("s", *ranges["s"])}</div>'
        '<div id="readout"></div></div>'
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(heading)}</title><style>{_STYLE}</style></head>"
        f'<body class="view-phi"><h1>{html.escape(heading)}</h1>{controls}{"".join(sections)}'
        f"<script>{_SCRIPT}</script></body></html>\n"
    )
