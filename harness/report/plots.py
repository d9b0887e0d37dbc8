"""PNG plots of one scenario: availability over time and latency over time, fault windows shaded.

Why ``matplotlib.figure.Figure`` and not ``pyplot``: pyplot keeps global state and picks a GUI backend
when one is around; a Figure rendered through the Agg canvas is headless, thread-safe and needs no
display, so plots render the same in CI, in xdist workers and on a laptop.

What is drawn is what was measured: the plots take the scenario's :class:`Measurements` (computed once,
by ``harness.checkers.measure``) — the availability curve is the very series the RTO was computed from,
with A as a dashed line and each fault's recovery point marked, so a reader can check an RTO by eye.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from harness.checkers.availability import MeasureParams
from harness.checkers.latency import nearest_rank
from harness.checkers.measure import Measurements, measure
from harness.checkers.ops import completed_op_ids
from harness.history import FaultWindow, History

AVAILABILITY_PNG = "availability.png"
LATENCY_PNG = "latency.png"
_FAULT_COLOURS = ("#f4a582", "#92c5de", "#c2a5cf", "#a6dba0", "#fddbc7")


def _new_figure() -> tuple[Figure, Axes]:
    fig = Figure(figsize=(10, 3.4), dpi=96, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def shade_faults(ax: Axes, faults: list[FaultWindow], t_end: float) -> None:
    """Shade each nemesis window and label it with its kind and target at the top of the axes."""
    for i, f in enumerate(faults):
        stop = f.t_stop if f.t_stop is not None else t_end
        ax.axvspan(f.t_start, stop, color=_FAULT_COLOURS[i % len(_FAULT_COLOURS)], alpha=0.35, lw=0)
        target = "" if f.target in (None, "") else f" {f.target}"
        label = f"{f.kind}{target}" + ("" if f.t_stop is not None else " (never healed)")
        ax.text(f.t_start, 1.0, label, transform=ax.get_xaxis_transform(), fontsize=8, va="bottom",
                ha="left", clip_on=False)


def availability_plot(history: History, path: Path, m: Measurements) -> Path:
    params = m.params
    series = m.series if m.series is not None else measure(history, params).series
    assert series is not None
    fig, ax = _new_figure()
    faults = history.faults()
    shade_faults(ax, faults, history.end)
    if series.t:
        ys = [math.nan if v is None else v * 100 for v in series.value]
        ax.plot(series.t, ys, lw=1.2, color="#2166ac", label=f"availability ({params.window_s:g} s window)")
        ax.axhline(params.threshold * 100, ls="--", lw=0.8, color="#b2182b", label=f"A = {params.threshold:.0%}")
        for fm in m.faults:
            if fm.t_recovered is not None:
                ax.axvline(fm.t_recovered, lw=0.8, color="#1b7837")
                ax.text(fm.t_recovered, 2, f" RTO {fm.rto_s:.1f} s", fontsize=8, color="#1b7837")
            elif fm.status == "never-recovered":
                ax.text(fm.t_inject, 2, " never recovered", fontsize=8, color="#b2182b")
        ax.legend(loc="lower right", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no probe data", transform=ax.transAxes, ha="center", va="center")
    ax.set_ylim(-2, 105)
    ax.set_xlabel("time since start of scenario (s)")
    ax.set_ylabel("probe success (%)")
    fig.savefig(path, format="png")
    return path


def latency_plot(history: History, path: Path, bucket_s: float = 1.0) -> Path:
    """Every op as a dot (ok) or a cross (fail/info) by invocation time, plus p50/p99 per bucket."""
    done = completed_op_ids(history)
    ops = [o for o in history.ops() if o.op_id in done]
    fig, ax = _new_figure()
    shade_faults(ax, history.faults(), history.end)
    if ops:
        by_f: dict[str, list[tuple[float, float]]] = defaultdict(list)
        errors: list[tuple[float, float]] = []
        buckets: dict[int, list[float]] = defaultdict(list)
        for o in ops:
            ms = max(o.latency_s * 1000.0, 0.01)
            if o.type == "ok":
                by_f[o.f].append((o.t_invoke, ms))
                buckets[int(o.t_invoke // bucket_s)].append(ms)
            else:
                errors.append((o.t_invoke, ms))
        for f, pts in sorted(by_f.items()):
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=3, alpha=0.5, label=f, lw=0)
        if errors:
            ax.scatter([p[0] for p in errors], [p[1] for p in errors], s=12, marker="x", color="#b2182b",
                       lw=0.8, label="fail / info")
        keys = sorted(buckets)
        xs = [(k + 0.5) * bucket_s for k in keys]
        for p, style in ((50, ":"), (99, "-")):
            ys = [nearest_rank(sorted(buckets[k]), p) for k in keys]
            ax.plot(xs, ys, ls=style, lw=1.0, color="black", label=f"p{p} per {bucket_s:g} s")
        ax.set_yscale("log")
        ax.legend(loc="upper right", fontsize=7, ncol=4, markerscale=2)
    else:
        ax.text(0.5, 0.5, "no client operations", transform=ax.transAxes, ha="center", va="center")
    ax.set_xlabel("time since start of scenario (s)")
    ax.set_ylabel("latency (ms)")
    fig.savefig(path, format="png")
    return path


def write_plots(scenario_dir: Path, history: History, params: MeasureParams | None = None,
                measurements: Measurements | None = None) -> list[str]:
    """Both plots into ``scenario_dir``, from the measurements already computed (computed here only
    when the caller has none); returns their file names (relative to the directory)."""
    m = measurements if measurements is not None else measure(history, params)
    availability_plot(history, scenario_dir / AVAILABILITY_PNG, m)
    latency_plot(history, scenario_dir / LATENCY_PNG)
    return [AVAILABILITY_PNG, LATENCY_PNG]
