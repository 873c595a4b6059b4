"""Token scoring: values against independent computations, chats, limits, and the heatmap page."""

from __future__ import annotations

import html
import math
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch

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
    assert pooled["n_tokens"] == sum(len(s.pieces) - 1 for s in scores)
    phi = np.concatenate([s.phi[1:] for s in scores])
    assert pooled["phi_mean"] == pytest.approx(phi.mean(), rel=1e-6)
    assert pooled["phi_bits_mean"] == pytest.approx(phi.mean() / math.log(2), rel=1e-6)


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


def test_heatmap_escapes_and_carries_every_token(model, tokenizer):
    text = 'x < y & "z" </span><script>alert(1)</script>'
    (s,) = score_texts(model, tokenizer, [text])
    page = heatmap_html([s], ["<b>t</b>"])
    assert page.count("<script>") == 1 and "&lt;b&gt;t&lt;/b&gt;" in page  # only the page's own script
    contents = re.findall(r'<span class="t o(?:n|ff)"[^>]*>([^<]*)</span>', page)
    assert len(contents) == len(s.pieces) and html.unescape("".join(contents)) == text
    assert "http://" not in page and "https://" not in page and "src=" not in page


CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--enable-logging=stderr", "--v=0",
]  # fmt: skip


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_heatmap_in_a_real_browser(model, tokenizer, tmp_path):
    """Headless Chromium renders every token with its PHi in the tooltip, offline, without console errors.

    A script appended to the page checks the rendered DOM and writes its verdict into the
    document, which --dump-dom prints; console messages (errors, uncaught exceptions) appear
    in Chromium's log as ':CONSOLE' lines."""
    scores = score_texts(model, tokenizer, [*TEXTS, Chat("Count", "1 2 3\n4 5 6 & <7>")])
    page = heatmap_html(scores, ["a", "b", "c"])
    probe = """<script>
window.addEventListener('load', function () {
  var spans = document.querySelectorAll('span.t');
  var ok = 0;
  spans.forEach(function (s) { if (/^PHi|^not scored/.test(s.title) && s.dataset.phi) ok++; });
  var bg = getComputedStyle(document.querySelector('span.t.on')).backgroundColor;
  document.querySelector('input[value=nll]').click();
  var bg2 = getComputedStyle(document.querySelector('span.t.on')).backgroundColor;
  var out = document.createElement('pre');
  out.id = 'verdict';
  out.textContent = 'spans=' + spans.length + ' ok=' + ok + ' phi_bg=' + bg + ' nll_bg=' + bg2 +
    ' view=' + document.body.className;
  document.body.appendChild(out);
});
</script></body>"""
    path = tmp_path / "heatmap.html"
    path.write_text(page.replace("</body>", probe), encoding="utf-8")
    result = subprocess.run(
        ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", path.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    verdict = result.stdout.split('id="verdict">')[1].split("<")[0]
    n = sum(len(s.pieces) for s in scores)
    assert f"spans={n} ok={n}" in verdict
    phi_bg, nll_bg = verdict.split("phi_bg=")[1].split(" nll_bg=")
    assert phi_bg != nll_bg.split(" view=")[0], "the toggle switches the colouring"
    assert "view=view-nll" in verdict
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]  # the page logs nothing
    assert not console, console
