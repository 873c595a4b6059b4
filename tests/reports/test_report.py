"""The reproduction's figures and report page: labels that never overlap in the PHi-vs-loss view,
an SVG beside every PNG, and report.html in a real browser — a spread only where there are
several seeds, every figure shown, every SVG link resolving, nothing on the console."""

from __future__ import annotations

import itertools
import json
import math
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest
from analyses import LEVELS, analysis
from browser import needs_chromium, render
from matplotlib.text import Text

from qphi.evaluation.complexity import complexity_analysis
from qphi.evaluation.pfa_levels import BlockRecord, LevelEvaluation, TokenRecords
from qphi.evaluation.results import UNITS, BottleneckResults, KeyResults, directions, pool_coding, pool_levels
from qphi.reports.plots import phi_vs_nll_figure
from qphi.reports.reproduce import FIGURES, write_report

# PHi and next-token loss of a cpu-quick reproduction after 20 steps: many points within a
# label's width of each other (they overlapped as text labels)
CROWDED = {
    "Continuous": {"Mem. Seq.": (4.231, 0.465), "Mem. Prog.": (4.215, 0.496), "ICLL": (4.212, 0.508),
                   "Random": (4.248, 0.505)},
    "Gumbel": {"Mem. Seq.": (4.071, 1.653), "Mem. Prog.": (4.057, 1.539), "ICLL": (4.040, 1.415),
               "Random": (4.121, 1.377)},
    "VQ": {"Mem. Seq.": (4.058, 4.085), "Mem. Prog.": (4.041, 4.122), "ICLL": (4.015, 4.127),
           "Random": (4.066, 4.112)},
    "RQ": {"Mem. Seq.": (4.177, 3.367), "Mem. Prog.": (4.164, 3.524), "ICLL": (4.137, 3.568),
           "Random": (4.191, 3.328)},
    "FSQ": {"Mem. Seq.": (4.107, 5.724), "Mem. Prog.": (4.104, 5.983), "ICLL": (4.080, 5.467),
            "Random": (4.121, 5.175)},
}  # fmt: skip


def test_no_two_texts_of_the_phi_vs_loss_view_overlap():
    fig = phi_vs_nll_figure(CROWDED)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    boxes = {id(t): (t.get_text(), t.get_window_extent(renderer)) for t in texts}
    shown = [text for text, _ in boxes.values()]
    for name in [*CROWDED, *CROWDED["VQ"]]:
        assert shown.count(name) == 1  # every series and every level is named once, in the legend
    for (a, box_a), (b, box_b) in itertools.combinations(boxes.values(), 2):
        assert not box_a.overlaps(box_b), f"'{a}' overlaps '{b}'"
    (ax,) = fig.axes
    assert not ax.get_legend().get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))


def evaluation_of(seed: int) -> LevelEvaluation:
    """One model's evaluation of the same 8 ICLL automata, for the complexity section."""
    rng = np.random.default_rng(seed)
    dl, phi, nll = np.linspace(20, 60, 8), rng.uniform(0.2, 0.6, 8), rng.uniform(2, 3, 8)
    blocks = [BlockRecord(3, b, 4, 8, 5, float(dl[b]), False, float(phi[b]), float(nll[b]), 1) for b in range(8)]
    arange = np.arange(8)
    return LevelEvaluation(TokenRecords(np.full(8, 3), arange, phi, nll, phi[None], None, None), blocks)


def report(out: Path, seeds: int) -> KeyResults:
    """write_report on `seeds` hand-made analyses per bottleneck (Gumbel with a code stream)."""
    rng = np.random.default_rng(seeds)
    bottlenecks, complexity = {}, {}
    for name, coded in (("continuous", None), ("gumbel", 1.0)):
        runs = [
            analysis(s, dict(zip(LEVELS, rng.uniform(0.1, 1.0, 4), strict=True)), coded and dict.fromkeys(LEVELS, coded + s / 10))
            for s in range(seeds)
        ]  # fmt: skip
        seeds_list = [r.seed for r in runs]
        bottlenecks[name] = BottleneckResults(
            pool_levels(runs), seeds_list, 10, directions(runs), coding=pool_coding(runs)
        )
        complexity[name] = complexity_analysis([evaluation_of(s) for s in range(seeds)], resamples=50)
    results = KeyResults("cpu", UNITS, bottlenecks)
    write_report(out, results, complexity)
    return results


@pytest.mark.parametrize("seeds", [1, 3])
def test_every_figure_is_written_as_png_and_svg(tmp_path, seeds):
    report(tmp_path, seeds)
    for name in FIGURES:
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")
        svg = ElementTree.parse(tmp_path / Path(name).with_suffix(".svg")).getroot()
        assert svg.tag.endswith("svg")


PROBE = """<script>
window.addEventListener('load', function () {
  var imgs = Array.from(document.querySelectorAll('img'));
  var cells = Array.from(document.querySelectorAll('td')).map(function (td) { return td.textContent; });
  var out = document.createElement('pre');
  out.id = 'verdict';
  out.textContent = JSON.stringify({
    figures: imgs.filter(function (i) { return !i.classList.contains('svg'); }).length,
    loaded: imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length,
    images: imgs.length,
    tables: document.querySelectorAll('table').length,
    spread: cells.filter(function (c) { return c.indexOf('±') >= 0; }),
    zero: cells.filter(function (c) { return /± 0\\.000$/.test(c); }).length
  });
  document.body.appendChild(out);
});
</script>"""


@needs_chromium
@pytest.mark.parametrize("seeds", [1, 3])
def test_the_report_in_a_real_browser(tmp_path, seeds):
    """A script appended to the page reports what Chromium rendered; the SVG beside each PNG is
    loaded by an <img> pointing at the page's own link to it."""
    results = report(tmp_path, seeds)
    page = (tmp_path / "report.html").read_text()
    links = re.findall(r'<a href="([^"]+\.svg)">SVG</a>', page)
    assert sorted(links) == sorted(str(Path(f).with_suffix(".svg")) for f in FIGURES)
    svgs = "".join(f'<img class="svg" src="{link}">' for link in links)
    (tmp_path / "probed.html").write_text(page.replace("</body>", svgs + PROBE + "</body>"), encoding="utf-8")
    dom, console = render(tmp_path / "probed.html", tmp_path / "profile")
    verdict = json.loads(dom.split('id="verdict">')[1].split("<")[0].replace("&quot;", '"'))
    assert verdict["figures"] == len(FIGURES) and verdict["images"] == 2 * len(FIGURES)
    assert verdict["loaded"] == verdict["images"]  # every PNG and every linked SVG decoded
    assert verdict["tables"] >= 8 and verdict["zero"] == 0
    if seeds == 1:
        assert verdict["spread"] == []
    else:
        gumbel = results.bottlenecks["gumbel"].levels["icll"]
        assert f"{gumbel.phi_mean:.3f} ± {gumbel.phi_std:.3f}" in verdict["spread"]
        assert not math.isclose(gumbel.phi_std, 0.0)
    assert not console, console
