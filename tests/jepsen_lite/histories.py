"""Hand-made histories for the checker tests: each operation given by its interval and outcome, written through
the real `History` writer (on a fake clock) so that every history a test checks is one the format accepts.

Times are plain ints (ns); `ret=None` leaves an invocation without completion.
"""

import dataclasses
import os

from jepsen_lite.history import History

REG = "reg/k0"
SET = "set/s0"
SESSION = "session/k0"


@dataclasses.dataclass(frozen=True)
class Spec:
    process: int
    f: str
    key: str
    value: object
    call: int
    ret: int | None
    type: str = "ok"
    result: object = None  # what an ok read returned
    fields: dict = dataclasses.field(default_factory=dict)  # on the invocation
    outputs: dict = dataclasses.field(default_factory=dict)  # on the completion


def read(process, call, ret, value=None, version=0, key=REG, type="ok", http_status=None, **fields):
    outputs = _some(version=version if type == "ok" else None, http_status=http_status)
    return Spec(process, "read", key, None, call, ret, type, value, fields, outputs)


def write(process, call, ret, value, version=None, key=REG, type="ok", **outputs):
    return Spec(process, "write", key, value, call, ret, type, None, {}, _some(version=version, **outputs))


def cas(process, call, ret, expected, value, version=None, key=REG, type="ok", error=None):
    return Spec(process, "cas", key, [expected, value], call, ret, type, None, {},
                _some(version=version, error=error))


def add(process, call, ret, element, key=SET, type="ok"):
    return Spec(process, "add", key, element, call, ret, type)


def set_read(process, call, ret, elements, key=SET, type="ok", final=False, node=None):
    return Spec(process, "read", key, None, call, ret, type, elements, _some(final=final or None, node=node))


def _some(**values) -> dict:
    return {name: value for name, value in values.items() if value is not None}


def records(*specs: Spec, faults=()) -> list[dict]:
    """The records a run doing `specs` would write; `faults` are (name, start, stop or None)."""
    events = []  # (time, order, seq, action): completions before invocations at equal times
    for seq, spec in enumerate(specs):
        events.append((spec.call, 2, seq, ("invoke", spec)))
        if spec.ret is not None:
            events.append((spec.ret, 1, seq, ("complete", spec)))
    for seq, (fault, start, stop) in enumerate(faults):
        events.append((start, 0, seq, ("start", fault)))
        if stop is not None:
            events.append((stop, 0, seq, ("stop", fault)))
    now = [0]
    written, invocations, starts = [], {}, {}
    with History(os.devnull, {"run": "test"}, clock=lambda: now[0]) as history:
        for time, _, seq, (action, subject) in sorted(events, key=lambda event: event[:3]):
            now[0] = time
            if action == "invoke":
                invocations[seq] = history.invoke(subject.process, subject.f, subject.key, subject.value,
                                                  **subject.fields)
                written.append(invocations[seq])
            elif action == "complete":
                value = subject.result if subject.f == "read" and subject.type == "ok" else None
                written.append(history.complete(invocations[seq], subject.type, value, **subject.outputs))
            elif action == "start":
                starts[seq] = history.nemesis(subject)
                written.append(starts[seq])
            else:
                written.append(history.nemesis_end(starts[seq]))
    return written
