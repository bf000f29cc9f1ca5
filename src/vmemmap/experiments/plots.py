"""SVG figures for the experiments (matplotlib, Agg backend, byte-for-byte reproducible).

``svg.hashsalt`` is fixed and the ``Date`` metadata dropped, so the same numbers give the same file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

#: one colour per model / CPU in every figure
_KNOWN = ("flatmem", "discontigmem", "sparsemem", "sparsemem-extreme", "vmemmap", "vmemmap-4k",
          "k8", "skylake", "icelake", "zen4", "core2", "nehalem", "zen2")
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31")


def _colour(name: str, i: int) -> str:
    return _PALETTE[_KNOWN.index(name) % len(_PALETTE)] if name in _KNOWN else _PALETTE[(i + 6) % len(_PALETTE)]


_RC = {"svg.hashsalt": "vmemmap-experiments", "svg.fonttype": "none", "font.size": 8,
       "axes.grid": True, "grid.alpha": 0.3}


def _save(fig: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None, "Creator": "vmemmap experiment"})
    plt.close(fig)
    return path.name


def _grid(n: int, ncols: int, width: float, height: float):  # noqa: ANN202
    """A figure of ``n`` panels, at most ``ncols`` a row, each ``width`` x ``height`` inches; the
    grid's spare cells hidden."""
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    return fig, axes


def grouped_bars(path: Path, title: str, panels: list[tuple[str, list[str], dict[str, list[float]]]],
                 ylabel: str, ncols: int = 2) -> str:
    """One panel per (title, x labels, {series: values}); bars grouped by x label."""
    with plt.rc_context(_RC):
        fig, axes = _grid(len(panels), ncols, 6.5, 2.8)
        for ax, (ptitle, xs, series) in zip(axes.flat, panels):
            k = max(1, len(series))
            w = 0.8 / k
            for i, (name, vals) in enumerate(series.items()):
                ax.bar([x + (i - (k - 1) / 2) * w for x in range(len(xs))], vals, w, label=name, color=_colour(name, i))
            ax.set_xticks(range(len(xs)))
            ax.set_xticklabels(xs, rotation=30, ha="right")
            ax.set_title(ptitle)
            ax.set_ylabel(ylabel)
            ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.suptitle(title)
        return _save(fig, path)


def lines(path: Path, title: str, panels: list[tuple[str, list[float], dict[str, list[float]]]],
          xlabel: str, ylabel: str, xticklabels: list[str] | None = None, logy: bool = False,
          ncols: int = 3) -> str:
    """One panel per (title, x values, {series: values}); x on a log2 axis."""
    with plt.rc_context(_RC):
        fig, axes = _grid(len(panels), ncols, 4.2, 3.0)
        for ax, (ptitle, xs, series) in zip(axes.flat, panels):
            for i, (name, vals) in enumerate(series.items()):
                ax.plot(xs, vals, marker="o", markersize=3, label=name, color=_colour(name, i))
            ax.set_xscale("log", base=2)
            if logy:
                ax.set_yscale("log")
            if xticklabels:
                ax.set_xticks(xs)
                ax.set_xticklabels(xticklabels, rotation=45, ha="right")
            ax.set_title(ptitle)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.legend(fontsize=6)
        fig.suptitle(title)
        return _save(fig, path)
