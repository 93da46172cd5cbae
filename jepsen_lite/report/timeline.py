"""`timeline.html`: one self-contained page, no script and no external asset (jepsen.md §6.6).

One horizontal lane per process, grouped by node, time along x. Each operation is a bar from invocation to
completion in Jepsen's colours (ok blue, fail pink, info orange); an info bar runs hatched to the end of the
history, since it may take effect at any time. Fault windows are translucent bands across every lane, labelled
with the fault. Operations that witness a violation get a thick red outline and an anchor; the header links
to the first. Hovering a bar shows the operation as JSON.
"""

import html
import json

from ..checker.ops import Op, Paired
from . import fault_colours

timeline_ops_max = 20_000  # bars drawn; beyond, the violating ones and the earliest others
label_px = 160
lane_px = 18  # a bar is 14 px high (.op in the style), 2 px below its lane's top
plot_px_per_second = 100
plot_px_min = 1_000
plot_px_max = 30_000
_STYLE = """
body { font: 13px sans-serif; margin: 1em; }
.scroll { overflow: auto; border: 1px solid #ccc; max-height: 85vh; }
.canvas { position: relative; }
.lane { position: absolute; left: 0; width: 100%; border-top: 1px solid #eee; }
.label { position: absolute; left: 4px; font: 11px monospace; color: #444; white-space: nowrap; }
.fault { position: absolute; top: 0; opacity: 0.18; }
.fault-label { position: absolute; top: 2px; font: 11px sans-serif; color: #000; white-space: nowrap; }
.op { position: absolute; height: 14px; min-width: 2px; box-sizing: border-box; }
.ok { background: #81BFFC; }
.fail { background: #FF1E90; }
.info { background: repeating-linear-gradient(45deg, #FFA400 0 4px, #ffe0a0 4px 8px); }
.violation { outline: 3px solid #d00000; z-index: 2; }
"""


def render(paired: Paired, result: dict, title: str) -> str:
    """The page for a checked history; `result` is what `checker.check` returned."""
    violating = set(result.get("violating_ops", []))
    shown = _shown(paired.ops, violating)
    lanes = _lanes(shown)
    width = _plot_width(paired.end)
    height = lane_px * (len(lanes) + 1)

    def x(time: int) -> float:
        return label_px + width * time / max(paired.end, 1)

    colours = fault_colours(paired.windows)
    body = [_fault_band(window, x, height, colours[window.fault]) for window in paired.windows]
    body += [f'<div class="lane" style="top:{lane_px * (row + 1)}px"><span class="label">{html.escape(lane)}'
             f"</span></div>" for row, lane in enumerate(lanes)]
    body += [_bar(op, x, paired.end, lane_px * (lanes[_lane(op)] + 1) + 2, op.id in violating) for op in shown]
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>{_header(paired, result, title, len(shown))}"
            f'<div class="scroll"><div class="canvas" style="width:{label_px + width + 20}px;height:{height}px">'
            + "".join(body) + "</div></div></body></html>")


def _shown(ops: list[Op], violating: set) -> list[Op]:
    if len(ops) <= timeline_ops_max:
        return ops
    others = [op for op in ops if op.id not in violating][: max(0, timeline_ops_max - len(violating))]
    return sorted([op for op in ops if op.id in violating] + others, key=lambda op: op.id)


def _lane(op: Op) -> str:
    return f"{op.node or '-'} · p{op.process}"


def _lanes(ops: list[Op]) -> dict[str, int]:
    """Lane label -> row, grouped by node, then by process."""
    keys = sorted({(op.node or "", op.process, _lane(op)) for op in ops})
    return {label: row for row, (_, _, label) in enumerate(keys)}


def _plot_width(end: int) -> int:
    return int(min(plot_px_max, max(plot_px_min, end / 1e9 * plot_px_per_second)))


def _fault_band(window, x, height: int, colour: str) -> str:
    left, right = x(window.start), x(window.stop)
    label = html.escape(f"{window.fault} {json.dumps(window.details)}")
    return (f'<div class="fault" style="left:{left:.1f}px;width:{max(right - left, 2):.1f}px;height:{height}px;'
            f'background:{colour}" title="{label}"></div><span class="fault-label" style="left:{left + 2:.1f}px">'
            f"{html.escape(window.fault)}</span>")


def _bar(op: Op, x, end: int, top: int, violating: bool) -> str:
    left = x(op.call)
    right = x(end if op.type == "info" or op.ret is None else op.ret)
    classes = f"op {op.type}" + (" violation" if violating else "")
    anchor = f' id="op-{op.id}"' if violating else ""
    tooltip = html.escape(json.dumps(op.describe(), default=str))
    return (f'<div class="{classes}"{anchor} style="left:{left:.1f}px;top:{top}px;width:{right - left:.1f}px" '
            f'title="{tooltip}"></div>')


def _header(paired: Paired, result: dict, title: str, shown: int) -> str:
    verdict = {True: "valid", False: "NOT valid", "unknown": "UNKNOWN"}[result["valid"]]
    violating = result.get("violating_ops", [])
    jump = f' <a href="#op-{violating[0]}">[jump to first violation]</a>' if violating else ""
    count = f"{len(paired.ops)} operations" if shown == len(paired.ops) else \
        f"showing {shown} of {len(paired.ops)} operations (all violating ones)"
    return (f"<h1>{html.escape(title)}</h1><p>verdict: <b>{verdict}</b>; {len(violating)} violating operations"
            f"{jump}; {count}; {len(paired.windows)} fault windows</p>")
