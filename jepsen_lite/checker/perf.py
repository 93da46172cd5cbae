"""Figures, never a verdict (jepsen.md §6.6): counts, rate, latencies, availability per fault, failover.

- availability: ok / (ok + fail + info) over client operations invoked inside a fault window (per window, per
  fault, and overall), and over those invoked outside every window;
- failover: from a window's start to the completion of the first ok write (write, cas or add) invoked at or
  after it; None when none came before the history ended;
- longest write gap: the longest time between consecutive completions of ok writes.
"""

from .ops import Op, Paired, percentile

_NS_PER_SECOND = 1e9
_NS_PER_MS = 1e6


def measure(paired: Paired) -> dict:
    ops = paired.ops
    duration = paired.end / _NS_PER_SECOND
    faulted = {op.id for op in ops if any(_inside(op, window) for window in paired.windows)}
    during = [op for op in ops if op.id in faulted]
    outside = [op for op in ops if op.id not in faulted]
    windows = [_window_figures(window, ops) for window in paired.windows]
    return {
        "ops": len(ops), "duration_s": round(duration, 3),
        "ops_per_second": round(len(ops) / duration, 1) if duration else None,
        "types": _types(ops), "by_f": {f: _types([op for op in ops if op.f == f]) for f in sorted({o.f for o in ops})},
        "latency_ms": {"outside": _latencies(outside), "during": _latencies(during)},
        "availability": {"outside": _availability(outside), "during": _availability(during),
                         "by_fault": _by_fault(paired, ops)},
        "windows": windows,
        "failover_s": _failover_summary([window["failover_s"] for window in windows]),
        "longest_write_gap_s": _longest_write_gap(ops),
    }


def _inside(op: Op, window) -> bool:
    return window.start <= op.call <= window.stop


def _types(ops: list[Op]) -> dict[str, int]:
    return {kind: sum(op.type == kind for op in ops) for kind in ("ok", "fail", "info")}


def _availability(ops: list[Op]) -> float | None:
    return round(sum(op.type == "ok" for op in ops) / len(ops), 4) if ops else None


def _latencies(ops: list[Op]) -> dict:
    values = sorted((op.ret - op.call) / _NS_PER_MS for op in ops if op.type == "ok")
    return {name: percentile(values, fraction) for name, fraction in
            (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))}


def _window_figures(window, ops: list[Op]) -> dict:
    inside = [op for op in ops if _inside(op, window)]
    return {"id": window.id, "fault": window.fault, "start_s": round(window.start / _NS_PER_SECOND, 3),
            "stop_s": round(window.stop / _NS_PER_SECOND, 3), "ops": len(inside),
            "availability": _availability(inside), "failover_s": _failover(window, ops)}


def _failover(window, ops: list[Op]) -> float | None:
    recovered = [op.ret for op in ops if op.writes and op.type == "ok" and op.call >= window.start]
    return round((min(recovered) - window.start) / _NS_PER_SECOND, 3) if recovered else None


def _by_fault(paired: Paired, ops: list[Op]) -> dict[str, float | None]:
    faults = sorted({window.fault for window in paired.windows})
    return {fault: _availability([op for op in ops if any(_inside(op, window) for window in paired.windows
                                                           if window.fault == fault)]) for fault in faults}


def _failover_summary(times: list[float | None]) -> dict:
    known = sorted(time for time in times if time is not None)
    return {"windows": len(times), "recovered": len(known), "p50": percentile(known, 0.5),
            "max": percentile(known, 1.0)}


def _longest_write_gap(ops: list[Op]) -> float | None:
    done = sorted(op.ret for op in ops if op.writes and op.type == "ok")
    gaps = [after - before for before, after in zip(done, done[1:], strict=False)]
    return round(max(gaps) / _NS_PER_SECOND, 3) if gaps else None
