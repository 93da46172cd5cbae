"""`latency-raw.png` and `rate.png` (jepsen.md §6.6), drawn like Jepsen's perf checker, fault windows shaded.

matplotlib's object API (`Figure`, no pyplot) draws with the Agg canvas and keeps no global state, so this is
safe in any process, display or not.
"""

from matplotlib.figure import Figure

from ..checker.ops import Paired
from . import fault_colours

TYPE_COLOURS = {"ok": "#81BFFC", "info": "#FFA400", "fail": "#FF1E90"}  # Jepsen's perf palette
_MARKERS = ("o", "s", "^", "D", "v", "P")
figure_inches = (12, 5)
rate_bucket_seconds = 1


def write_latency(paired: Paired, path) -> None:
    """A scatter of latency (ms, log) against invocation time (s) for every completed op: colour by type,
    marker by f."""
    figure = Figure(figsize=figure_inches)
    axes = figure.add_subplot()
    completed = [op for op in paired.ops if op.ret is not None]
    functions = sorted({op.f for op in completed})
    for type, colour in TYPE_COLOURS.items():
        for index, f in enumerate(functions):
            marker = _MARKERS[index % len(_MARKERS)]
            chosen = [op for op in completed if op.type == type and op.f == f]
            if chosen:
                axes.scatter([op.call / 1e9 for op in chosen], [max((op.ret - op.call) / 1e6, 1e-3) for op in chosen],
                             s=6, c=colour, marker=marker, label=f"{f} {type}", linewidths=0)
    axes.set_yscale("log")
    _finish(figure, axes, paired, "latency (ms)", "latency of every completed operation", path)


def write_rate(paired: Paired, path) -> None:
    """Completions per second by type, stacked."""
    figure = Figure(figsize=figure_inches)
    axes = figure.add_subplot()
    buckets = int(paired.end / 1e9 / rate_bucket_seconds) + 1
    counts = {type: [0] * buckets for type in TYPE_COLOURS}
    for op in paired.ops:
        if op.ret is not None:
            counts[op.type][int(op.ret / 1e9 / rate_bucket_seconds)] += 1
    seconds = [bucket * rate_bucket_seconds for bucket in range(buckets + 1)]  # the last bucket's right edge too
    rates = [[count / rate_bucket_seconds for count in counts[type] + counts[type][-1:]] for type in TYPE_COLOURS]
    axes.stackplot(seconds, *rates,
                   labels=list(TYPE_COLOURS), colors=list(TYPE_COLOURS.values()), step="post")
    _finish(figure, axes, paired, "completions per second", "throughput", path)


def _finish(figure: Figure, axes, paired: Paired, ylabel: str, title: str, path) -> None:
    _shade(axes, paired)
    axes.set_xlabel("time since start (s)")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.set_xlim(0, max(paired.end / 1e9, 1))
    handles, labels = axes.get_legend_handles_labels()
    if handles:
        axes.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def _shade(axes, paired: Paired) -> None:
    """One translucent band per fault window; one legend entry per fault."""
    colours = fault_colours(paired.windows)
    labelled: set[str] = set()
    for window in paired.windows:
        axes.axvspan(window.start / 1e9, window.stop / 1e9, color=colours[window.fault], alpha=0.15,
                     label=None if window.fault in labelled else window.fault)
        labelled.add(window.fault)
