"""Pairing (jepsen.md §6.5 step 1, Knossos `preprocess`): a history's records become operations, each an
invocation with its completion, and the nemesis records become fault windows.

An invocation left without completion is unknown: it becomes an "info" operation that never returned. Each
operation is named by its invocation's index, which the reports and the timeline use as its id.
"""

import dataclasses
import json

witnesses_max = 20  # findings listed in full per kind; the rest are counted


@dataclasses.dataclass(frozen=True, slots=True)
class Op:
    """One client operation. `value` is what a read returned, else what was sent. `ret` is the completion's
    time, None when none came; an "info" operation may take effect at any time after `call`, even after `ret`."""

    id: int
    process: int
    f: str
    key: str
    value: object
    type: str
    call: int
    ret: int | None
    node: str | None = None
    version: int | None = None
    error: str | None = None
    http_status: int | None = None
    index_token_sent: str | None = None
    index_token: str | None = None
    forward: bool = False
    final: bool = False

    @property
    def workload(self) -> str:
        return self.key.split("/", 1)[0]

    @property
    def writes(self) -> bool:
        return self.f in ("write", "cas", "add")

    @property
    def written(self):
        """The value a write or a cas puts (a cas's value is [expected_version, new_value])."""
        return self.value[1] if self.f == "cas" else self.value

    def describe(self) -> dict:
        """The operation as the reports show it."""
        fields = dataclasses.asdict(self)
        return {name: value for name, value in fields.items()
                if name in ("value", "ret") or (value is not None and value is not False)}


@dataclasses.dataclass(frozen=True, slots=True)
class Window:
    """A fault, from its start record to its stop record; `stop` is the end of the history when none came."""

    id: int
    fault: str
    start: int
    stop: int
    details: dict


@dataclasses.dataclass(frozen=True)
class Paired:
    """A history as operations (in invocation order) and fault windows; `end` is the time of its last record."""

    ops: list[Op]
    windows: list[Window]
    end: int

    def of(self, workload: str) -> list[Op]:
        return [op for op in self.ops if op.workload == workload]


def pair(records: list[dict]) -> Paired:
    """Records as `history.load` returns them (valid by the format's rules) become operations and windows."""
    invocations: dict[int, dict] = {}
    starts: dict[int, dict] = {}
    ops, windows = [], []
    end = records[-1]["time"] if records else 0
    for record in records:
        if record["process"] == "nemesis" and record["f"] == "start":
            starts[record["index"]] = record
        elif record["process"] == "nemesis":
            windows.append(_window(starts.pop(record["value"]["start"]), record["time"]))
        elif record["type"] == "invoke":
            invocations[record["process"]] = record
        else:
            ops.append(_op(invocations.pop(record["process"]), record))
    ops += [_op(invocation, None) for invocation in invocations.values()]
    windows += [_window(start, end) for start in starts.values()]
    ops.sort(key=lambda op: op.id)
    windows.sort(key=lambda window: window.id)
    return Paired(ops, windows, end)


def _op(invocation: dict, completion: dict | None) -> Op:
    done = completion or {"type": "info", "value": invocation["value"], "error": "no completion", "time": None}
    return Op(id=invocation["index"], process=invocation["process"], f=invocation["f"], key=invocation["key"],
              value=done["value"], type=done["type"], call=invocation["time"], ret=done["time"],
              node=invocation.get("node"), version=done.get("version"), error=done.get("error"),
              http_status=done.get("http_status"), index_token_sent=invocation.get("index_token"),
              index_token=done.get("index_token"), forward=invocation.get("forward", False),
              final=invocation.get("final", False))


def _window(start: dict, stop_time: int) -> Window:
    details = {name: value for name, value in start["value"].items() if name != "fault"}
    return Window(start["index"], start["value"]["fault"], start["time"], stop_time, details)


def by_key(ops: list[Op]) -> dict[str, list[Op]]:
    keys: dict[str, list[Op]] = {}
    for op in ops:
        keys.setdefault(op.key, []).append(op)
    return keys


def canonical(value) -> str:
    """A JSON value as comparable, hashable text: two values are equal iff their texts are."""
    return json.dumps(value, sort_keys=True)


def capped(findings: list) -> dict:
    """A list of findings as its count and its first few, so that a report stays small whatever went wrong."""
    return {"count": len(findings), "first": findings[:witnesses_max]}


def percentile(sorted_values: list, fraction: float):
    """The nearest-rank percentile of an ascending list; None for an empty one."""
    if not sorted_values:
        return None
    rank = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[rank]


def combine(verdicts) -> bool | str:
    """Verdicts (True, False, "unknown") as one: False if any is, else "unknown" if any is, else True."""
    verdicts = list(verdicts)
    return False if False in verdicts else "unknown" if "unknown" in verdicts else True
