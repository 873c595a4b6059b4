"""Token scoring: values against independent computations, chats, limits, and the heatmap page."""

from __future__ import annotations

import csv
import html
import io
import json
import math
import re
from xml.etree import ElementTree

import numpy as np
import pytest
import torch
from browser import needs_chromium, render

from qphi.errors import QPhiError
from qphi.evaluation.scoring import Chat, score_texts, summarize
from qphi.models import PHiModel
from qphi.phi import PHiConfig
from qphi.reports.heatmap import heatmap_html

from .conftest import make_llama

TEXTS = ["Once upon a time, in a quiet village, there lived an old man.", "def f(x): return x + 1  # 42"]


@pytest.fixture(scope="module")
def model(tokenizer) -> PHiModel:
    config = PHiConfig(d_model=32, bottleneck="continuous", prior={"n_heads": 4})
    return PHiModel(make_llama(len(tokenizer)), config, 1, freeze_base=True).eval()


def test_values_match_a_direct_forward_pass(model, tokenizer):
    scores = score_texts(model, tokenizer, TEXTS, batch_size=2)  # padded together
    for text, s in zip(TEXTS, scores, strict=True):
        ids = torch.tensor([tokenizer(text)["input_ids"]])
        with torch.no_grad():
            out = model(ids)
            plain = model.base(input_ids=ids, use_cache=False).logits
        logp = torch.log_softmax(out.logits[0].double(), -1)
        expected = -logp[torch.arange(ids.shape[1] - 1), ids[0, 1:]]
        np.testing.assert_allclose(s.nll[:-1], expected.numpy(), rtol=1e-4, atol=1e-4)
        assert math.isnan(s.nll[-1])
        base = -torch.log_softmax(plain[0].double(), -1)[torch.arange(ids.shape[1] - 1), ids[0, 1:]]
        np.testing.assert_allclose(s.base_nll[:-1], base.numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(s.phi, out.phi.phi[0].numpy(), rtol=1e-4, atol=1e-3)
        assert "".join(s.pieces) == text and not s.mask[0] and s.mask[1:].all()
    pooled = summarize(scores)
    assert pooled.n_tokens == sum(len(s.pieces) - 1 for s in scores)
    phi = np.concatenate([s.phi[1:] for s in scores])
    assert pooled.phi_mean == pytest.approx(phi.mean(), rel=1e-6)
    assert pooled.phi_bits_mean == pytest.approx(phi.mean() / math.log(2), rel=1e-6)


def test_chats_score_the_assistant_turn_only(model, tokenizer):
    (s,) = score_texts(model, tokenizer, [Chat("What is 3 + 4?", "3 + 4 = 7, so #### 7")])
    assert "".join(np.array(s.pieces, dtype=object)[s.mask]) == "3 + 4 = 7, so #### 7"
    assert "<|im_start|>user" in "".join(s.pieces)
    assert np.isfinite(s.nll[s.mask]).all()  # the last content token predicts the end of the turn


def test_limits_and_empty_input(model, tokenizer):
    (cut,) = score_texts(model, tokenizer, [Chat("q", TEXTS[0])], max_tokens=5)
    assert int(cut.mask.sum()) == 5 and np.isfinite(cut.nll[cut.mask]).all()
    with pytest.raises(QPhiError, match="context of 256"):
        score_texts(model, tokenizer, ["a b " * 400])
    with pytest.raises(QPhiError, match="empty"):
        score_texts(model, tokenizer, ["  \n"])
    with pytest.raises(QPhiError, match="empty"):
        score_texts(model, tokenizer, [Chat("q", "")])


SPAN = re.compile(r'<span class="t (on|off)" data-i="(\d+)" data-phi="([^"]*)" data-s="([^"]*)"[^>]*>([^<]*)</span>')


def test_heatmap_escapes_and_carries_every_token(model, tokenizer):
    text = 'x < y & "z" </span><script>alert(1)</script>'
    (s,) = score_texts(model, tokenizer, [text])
    page = heatmap_html([s], ["<b>t</b>"])
    assert page.count("<script>") == 1 and "&lt;b&gt;t&lt;/b&gt;" in page  # only the page's own script
    spans = SPAN.findall(page)
    assert len(spans) == len(s.pieces) and html.unescape("".join(c for *_, c in spans)) == text
    assert page.count('<tr class="') == len(s.pieces)  # one table row per token
    offline = page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # the SVG export's namespace, not a fetch
    assert "http://" not in offline and "https://" not in offline and "src=" not in page


def test_heatmap_puts_the_surprisal_on_the_token_it_scores(model, tokenizer):
    """Token u carries PHi of the latent after reading it and −ln p(token u | tokens before it),
    computed here from a direct forward pass; the first token has no surprisal."""
    text = TEXTS[0]
    (s,) = score_texts(model, tokenizer, [text])
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].double(), -1)
    own = -logp[torch.arange(ids.shape[1] - 1), ids[0, 1:]]  # surprisal of tokens 1..N-1
    spans = SPAN.findall(heatmap_html([s]))
    assert spans[0][3] == "" and [int(i) for _, i, *_ in spans] == list(range(len(s.pieces)))
    np.testing.assert_allclose([float(v) for *_, v, _ in spans[1:]], own.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose([float(p) for _, _, p, _, _ in spans], s.phi, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(s.surprisal[1:], s.nll[:-1])


def test_heatmap_labels_each_scale_with_its_quantity(model, tokenizer):
    scores = score_texts(model, tokenizer, TEXTS)
    page = heatmap_html(scores)
    phi, surprisal = (
        re.sub("<[^>]+>", "", re.search(f'<span class="scale for-{kind}".*?clipped\\)', page)[0])
        for kind in ("phi", "s")
    )  # the text each scale shows
    assert "PHi (nats)" in phi and "surprisal" not in phi
    assert "surprisal" in surprisal and "PHi" not in surprisal
    low, high = np.percentile(np.concatenate([s.surprisal[s.mask] for s in scores]), [2, 98])
    assert f"{low:.2f}" in surprisal and f"{high:.2f}" in surprisal


PROBE = """<script>
window.addEventListener('load', function () {
  var out = {}, downloads = [];
  HTMLAnchorElement.prototype.click = function () { downloads.push(this.download + ' ' + this.href.slice(0, 5)); };
  var spans = document.querySelectorAll('span.t');
  out.spans = spans.length;
  out.titled = Array.from(spans).filter(function (s) { return /^token \\d+/.test(s.title); }).length;
  var scale = document.getElementById('scale');
  out.scale_phi = scale.innerText;
  var scored = document.querySelector('#text-0 span.t.on');
  out.phi_bg = getComputedStyle(scored).backgroundColor;
  out.phi_var = scored.style.getPropertyValue('--phi').trim();
  out.svg = qphiHeatmap.svg(document.getElementById('text-2'), 'phi');
  document.querySelector('input[value=s]').click();
  out.view = document.body.className;
  out.scale_s = scale.innerText;
  out.s_bg = getComputedStyle(scored).backgroundColor;
  out.s_var = scored.style.getPropertyValue('--s').trim();
  out.first_bg = getComputedStyle(document.querySelector('#text-0 span.t[data-i="0"]')).backgroundColor;
  var hovered = document.querySelector('#text-1 span.t[data-i="3"]');
  hovered.dispatchEvent(new MouseEvent('mouseover', {bubbles: true}));
  out.readout = document.getElementById('readout').textContent;
  out.hover_title = hovered.title;
  out.marked = Array.from(document.querySelectorAll('.hl')).map(function (e) { return e.tagName + e.dataset.i; });
  out.csv = qphiHeatmap.csv(document.getElementById('text-2'));
  document.querySelectorAll('#text-2 button').forEach(function (b) { b.click(); });
  out.downloads = downloads;
  var pre = document.createElement('pre');
  pre.id = 'verdict';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script></body>"""


@needs_chromium
def test_heatmap_in_a_real_browser(model, tokenizer, tmp_path):
    """Headless Chromium renders every token with its values in the tooltip, offline, without
    console errors; the scale shown names the quantity of the view; hovering marks the token and
    its table row; the SVG figure parses as XML and holds every character of the text in the
    view's colours; the CSV holds every token's values.

    A script appended to the page acts and writes its findings into the document, which
    --dump-dom prints; console messages (errors, uncaught exceptions) appear in Chromium's log as
    ':CONSOLE' lines."""
    scores = score_texts(model, tokenizer, [*TEXTS, Chat("Count", '1 2 3\n4 5 6 & <7> "q"')])
    path = tmp_path / "heatmap.html"
    path.write_text(heatmap_html(scores, ["a", "b", "c d"]).replace("</body>", PROBE), encoding="utf-8")
    dom, console = render(path, tmp_path / "profile")
    out = json.loads(html.unescape(dom.split('id="verdict">')[1].split("</pre>")[0]))
    n = sum(len(s.pieces) for s in scores)
    assert out["spans"] == out["titled"] == n
    assert "PHi (nats)" in out["scale_phi"] and "surprisal" not in out["scale_phi"]
    assert "surprisal" in out["scale_s"] and "PHi" not in out["scale_s"] and out["view"] == "view-s"
    bg = {k: out[k].replace(" ", "") for k in ("phi_bg", "phi_var", "s_bg", "s_var")}  # rgb(1, 2, 3) → rgb(1,2,3)
    assert bg["phi_bg"] == bg["phi_var"] and bg["s_bg"] == bg["s_var"] != bg["phi_bg"]
    assert out["first_bg"] == "rgba(0, 0, 0, 0)"  # the first token has no surprisal
    assert out["hover_title"] in out["readout"] and sorted(out["marked"]) == ["SPAN3", "TR3"]
    # the figure: well-formed SVG, the text's characters in order, the token colours of the view
    third = scores[2]
    svg = ElementTree.fromstring(out["svg"])
    ns = "{http://www.w3.org/2000/svg}"
    drawn = "".join(t.text or "" for t in svg.iter(f"{ns}text")).replace(" ", "")
    assert drawn.endswith("".join("".join(third.pieces).split()))  # glyphs after the title and the scale
    fills = [r.get("fill") for r in svg.iter(f"{ns}rect")]
    assert any(f.startswith("rgb(") for f in fills[3:]) and "none" in fills  # scored tokens coloured, others not
    # the data: one row per token, values as the page holds them
    rows = list(csv.reader(io.StringIO(out["csv"])))
    assert rows[0] == ["position", "token", "scored", "phi_nats", "surprisal_nats"]
    assert ["".join(r[1] for r in rows[1:])] == ["".join(third.pieces)]
    np.testing.assert_allclose([float(r[3]) for r in rows[1:]], third.phi, rtol=1e-5, atol=1e-6)
    assert [r[2] == "true" for r in rows[1:]] == third.mask.tolist() and rows[1][4] == ""
    assert sorted(out["downloads"]) == ["c_d-surprisal.svg blob:", "c_d.csv blob:"]
    assert not console, console  # the page logs nothing
