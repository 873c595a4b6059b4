"""Figures shared by the experiments (matplotlib). Each is written atomically twice: as PNG
(inlined in the HTML reports) and as SVG beside it (for papers and slides)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from qphi.evaluation.complexity import ComplexityBins
from qphi.io import write_figure

PALETTE = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def save(fig: Figure, path: str | os.PathLike) -> None:
    """`path` (PNG) and the same figure as SVG beside it, cropped to what is drawn (legends
    placed outside the axes included); closes the figure."""
    for target in (Path(path), Path(path).with_suffix(".svg")):
        write_figure(target, fig, dpi=150, bbox_inches="tight")
    plt.close(fig)


def grouped_bars(
    path: str | os.PathLike,
    groups: Sequence[str],
    series: Mapping[str, tuple[Sequence[float], Sequence[float] | None]],
    ylabel: str,
    title: str = "",
) -> None:
    """One group of bars per x label, one bar per series, with error bars where given.

    series: name → (means per group, errors per group or None: no error bars, e.g. one seed).
    """
    fig, ax = plt.subplots(figsize=(1.2 + 1.3 * len(groups), 3.2))
    width = 0.8 / max(1, len(series))
    for i, (name, (means, errors)) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, means, width, yerr=errors, capsize=3 if errors is not None else 0, label=name,
               color=PALETTE[i % len(PALETTE)])  # fmt: skip
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    save(fig, path)


def phi_vs_nll(
    path: str | os.PathLike,
    points: Mapping[str, Mapping[str, tuple[float, float]]],
    phi_label: str = "PHi loss (nats/token)",
    title: str = "",
) -> None:
    """The paper's Figure 1 view (see `phi_vs_nll_figure`), written to `path` and beside it as SVG."""
    save(phi_vs_nll_figure(points, phi_label, title), path)


def phi_vs_nll_figure(
    points: Mapping[str, Mapping[str, tuple[float, float]]],
    phi_label: str = "PHi loss (nats/token)",
    title: str = "",
) -> Figure:
    """PHi against next-token loss (log x axis): one colour per series, one marker per task, a
    series' points joined in task order. Tasks are told apart by the legend, not by text next to
    the points: points of different series often lie within a label's width of each other.

    points: series → task → (next-token loss, PHi).
    """
    fig, ax = plt.subplots(figsize=(5.0, 3.8))
    tasks = list(dict.fromkeys(task for series in points.values() for task in series))
    for i, series in enumerate(points.values()):
        color = PALETTE[i % len(PALETTE)]
        ordered = [(task, *series[task]) for task in tasks if task in series]
        ax.plot([nll for _, nll, _ in ordered], [phi for _, _, phi in ordered], color=color, lw=0.8, alpha=0.5)
        for task, nll, phi in ordered:
            ax.scatter([nll], [phi], color=color, marker=MARKERS[tasks.index(task) % len(MARKERS)], s=34, zorder=3)
    handles = [
        Line2D([], [], ls="", marker=MARKERS[i % len(MARKERS)], color="#555", label=t) for i, t in enumerate(tasks)
    ]
    if len(points) > 1:
        handles = [Line2D([], [], ls="-", marker="o", color=PALETTE[i % len(PALETTE)], label=name)
                   for i, name in enumerate(points)] + handles  # fmt: skip
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())  # unlabelled minor ticks: labels like 4×10⁻¹ overlap
    values = [phi for tasks in points.values() for _, phi in tasks.values() if phi > 0]
    if values and max(values) / min(values) > 30:  # e.g. continuous next to quantized bottlenecks
        ax.set_yscale("log")
    ax.set_xlabel("next-token loss (nats/token)")
    ax.set_ylabel(phi_label)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def complexity_curves(path: str | os.PathLike, panels: Mapping[str, ComplexityBins]) -> None:
    """One panel per series: mean PHi per next-token-loss bin, one curve per complexity group."""
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(3.4 * max(1, len(panels)), 3.2), squeeze=False)
    for ax, (name, bins) in zip(axes[0], panels.items(), strict=False):
        x = bins.nll_mean_per_bin
        for i, curve in enumerate(bins.curves):
            lo, hi = curve.description_length
            pts = [(a, b) for a, b in zip(x, curve.phi_mean_per_bin, strict=True) if a is not None and b is not None]
            if not pts:  # a complexity group with no block in any bin (tiny evaluations)
                continue
            ax.plot(
                *zip(*pts, strict=True),
                marker="o",
                ms=3,
                color=PALETTE[i % len(PALETTE)],
                label=f"DL {lo:.0f}–{hi:.0f}",
            )
        ax.set_title(name)
        ax.set_xlabel("next-token loss (bin mean)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mean PHi (nats/token)")
    if axes[0][0].get_legend_handles_labels()[0]:
        axes[0][0].legend(fontsize=7, title="complexity (nats)", title_fontsize=7)
    fig.tight_layout()
    save(fig, path)


Band = tuple[Sequence[float], Sequence[float], Sequence[float]]  # values, lower bounds, upper bounds
Curve = tuple[Sequence[float], Sequence[float], Sequence[float] | None]  # xs, ys, errors (None: no error bars)


def selection_chances(
    path: str | os.PathLike,
    groups: Sequence[str],
    series: Mapping[str, Band],
    correlation: Band | None = None,
    xlabel: str = "",
    title: str = "",
) -> None:
    """The paper's reasoning-correctness view: per group (difficulty level), the chance (0..1,
    shown in %) that a selection rule picks a correct rationale, one line with a 95 % band per
    rule; optionally a correlation with error bars on a right-hand axis. NaN values are gaps."""
    fig, ax = plt.subplots(figsize=(5.4, 3.8))
    xs = list(range(len(groups)))
    for i, (name, (values, lows, highs)) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        ax.plot(xs, [100 * v for v in values], "--" if "random" in name else "-", marker="o", color=color, label=name)
        ax.fill_between(xs, [100 * v for v in lows], [100 * v for v in highs], color=color, alpha=0.2)
    ax.set_xticks(xs, groups)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("chance of choosing a correct answer (%)")
    handles, labels = ax.get_legend_handles_labels()
    if correlation is not None:
        values, lows, highs = correlation
        color = PALETTE[4]
        right = ax.twinx()
        errors = [
            [v - lo for v, lo in zip(values, lows, strict=True)],
            [hi - v for v, hi in zip(values, highs, strict=True)],
        ]
        right.errorbar(xs, values, yerr=errors, fmt="o--", color=color, label="partial correlation")
        right.axhline(0.0, color="grey", lw=0.6)
        right.set_ylabel("partial correlation", color=color)
        more_handles, more_labels = right.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    ax.legend(handles, labels, fontsize=7, loc="best")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save(fig, path)


def line_panels(
    path: str | os.PathLike,
    panels: Sequence[tuple[str, Mapping[tuple[str, str], Curve]]],
    xlabel: str,
    log2_x: bool = True,
) -> None:
    """Side-by-side line plots sharing an x axis (log2 by default), e.g. a quantity against K.

    panels: (y label, curves); curves: (name, variant) → (xs, ys, errors). A name keeps its
    colour in every panel and a variant (e.g. "Q=2") its line style; the variant "" is solid.
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.3), squeeze=False)
    names = list(dict.fromkeys(name for _, curves in panels for name, _ in curves))
    variants = list(dict.fromkeys(variant for _, curves in panels for _, variant in curves))
    styles = ("-", "--", ":", "-.")
    for ax, (ylabel, curves) in zip(axes[0], panels, strict=True):
        for (name, variant), (xs, ys, errors) in curves.items():
            ax.errorbar(
                xs,
                ys,
                yerr=errors,
                marker="o",
                ms=3,
                capsize=2 if errors is not None else 0,
                color=PALETTE[names.index(name) % len(PALETTE)],
                linestyle=styles[variants.index(variant) % len(styles)],
                label=f"{name} ({variant})" if variant else name,
            )
        if log2_x:
            ax.set_xscale("log", base=2)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save(fig, path)
