"""Load plots: throughput (offered, ok, errors per second) and latency percentiles over time, with the
nemesis/operation windows shaded and the measured phases marked.

Why exact per-second percentiles: each point is the nearest-rank percentile of the raw samples invoked
in that second (no histogram buckets), so the curves agree with the tables in run.json; the offered
line comes from the phases the driver recorded, so a reader sees at a glance where achieved fell short
of offered.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from harness.checkers.load_analysis import LoadAnalysis, analyze
from harness.history import History
from harness.report.plots import shade_faults

THROUGHPUT_PNG = "load-throughput.png"
LATENCY_PNG = "load-latency.png"


def _figure() -> tuple[Figure, Axes]:
    fig = Figure(figsize=(10, 3.4), dpi=96, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _mark_phases(ax: Axes, a: LoadAnalysis) -> None:
    for p in a.phases:
        ax.axvline(p.t_start, color="#999999", lw=0.6, ls=":")
        ax.text(p.t_start, 0.0, f" {p.name}", transform=ax.get_xaxis_transform(), fontsize=7, color="#555555",
                va="bottom", ha="left", rotation=90)


def throughput_plot(history: History, a: LoadAnalysis, path: Path, bucket_s: float = 1.0) -> Path:
    fig, ax = _figure()
    shade_faults(ax, history.faults(), history.end)
    if a.series:
        # the first and last buckets are only partly covered by the load: divide by what they cover
        t_first = a.series[0].t if a.total is None else a.total.t_start
        t_last = a.series[-1].t + bucket_s if a.total is None else a.total.t_end
        span = [max(1e-3, min(b.t + bucket_s, t_last) - max(b.t, t_first)) for b in a.series]
        xs = [b.t + bucket_s / 2 for b in a.series]
        ax.plot(xs, [b.ok / w for b, w in zip(a.series, span, strict=True)], lw=1.3, color="#1b7837",
                label="ok req/s")
        ax.plot(xs, [b.errors / w for b, w in zip(a.series, span, strict=True)], lw=1.0, color="#b2182b",
                label="fail + info req/s")
        off_x, off_y = [], []
        for p in a.phases:
            if p.offered_rps is not None:
                off_x += [p.t_start, p.t_end, float("nan")]
                off_y += [p.offered_rps, p.offered_rps, float("nan")]
        if off_x:
            ax.plot(off_x, off_y, lw=1.0, ls="--", color="black", label="offered (per phase)")
        _mark_phases(ax, a)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)
        ax.set_ylim(bottom=0)
    else:
        ax.text(0.5, 0.5, "no load samples", transform=ax.transAxes, ha="center", va="center")
    ax.set_xlabel("time since start of scenario (s)")
    ax.set_ylabel(f"requests per second ({bucket_s:g} s buckets)")
    fig.savefig(path, format="png")
    return path


def latency_plot(history: History, a: LoadAnalysis, path: Path, bucket_s: float = 1.0) -> Path:
    fig, ax = _figure()
    shade_faults(ax, history.faults(), history.end)
    pts = [b for b in a.series if b.p50 is not None]
    if pts:
        xs = [b.t + bucket_s / 2 for b in pts]
        for attr, style, colour in (("p50", ":", "#2166ac"), ("p95", "--", "#5aae61"), ("p99", "-", "black")):
            ax.plot(xs, [max(getattr(b, attr), 0.01) for b in pts], ls=style, lw=1.1, color=colour, label=attr)
        ax.scatter(xs, [max(b.max or 0.0, 0.01) for b in pts], s=6, color="#b2182b", label="max", lw=0)
        _mark_phases(ax, a)
        ax.set_yscale("log")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)
    else:
        ax.text(0.5, 0.5, "no successful load ops", transform=ax.transAxes, ha="center", va="center")
    ax.set_xlabel("time since start of scenario (s)")
    ax.set_ylabel(f"latency of ok ops (ms, exact per {bucket_s:g} s)")
    fig.savefig(path, format="png")
    return path


def write_load_plots(directory: Path, history: History, a: LoadAnalysis | None = None) -> list[str]:
    """Both plots into ``directory``; returns their file names."""
    a = a or analyze(history)
    throughput_plot(history, a, Path(directory) / THROUGHPUT_PNG)
    latency_plot(history, a, Path(directory) / LATENCY_PNG)
    return [THROUGHPUT_PNG, LATENCY_PNG]
