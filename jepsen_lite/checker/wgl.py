"""Per-key linearizability of a KV v2 register with version check-and-set: the Wing & Gong search with Lowe's
memoisation, as Knossos and Porcupine do it (jepsen.md §3.2, §3.3).

The model is one key: state (version, value), initially (0, None), the key absent.

    read -> (v, x) ok         legal iff state == (v, x)                   state unchanged
    write(x) ok -> v          legal iff v is None or v == version + 1     state (version + 1, x)
    cas(e, x) ok -> v         legal iff version == e and v in (None, e+1) state (e + 1, x)
    cas(e, x) cas-mismatch    legal iff version != e                      state unchanged
    write / cas info          as ok with v None; it may also never happen, or happen after everything else

Dropped: reads that are not ok (a read changes nothing) and failed writes, which definitely did not happen;
a CAS the server refused stays, as a check that the refusal was right.

The search: every call and return is an entry in one time-ordered, doubly linked list (calls before returns
at equal times: intervals are closed). An "info" op returns at +infinity, so its return sorts last. Walking
the list, a call whose op is legal in the current state is linearized (lifted out of the list, pushed on the
stack) unless the cache already holds the same set of linearized ops with the same state. Reaching the return
of an ok op not yet linearized means backtracking; reaching the return of an info op means every ok op is
linearized, and the rest may simply never have happened: linearizable. Reaching a return with an empty stack
means no order exists: not linearizable. The walk stops after `steps_max` steps with "unknown", never "valid".
"""

import dataclasses
import json
import sys
import time

from ..history import CAS_MISMATCH
from .ops import Op, by_key, canonical, combine, witnesses_max

steps_max = 2_000_000  # per key: about 2.5 s of CPython (jepsen.md §3.3, 0.8M steps/s)
RETURN_NEVER = sys.maxsize  # the return time of an info op: after every real time
INITIAL = (0, canonical(None))


@dataclasses.dataclass(frozen=True, slots=True)
class _Call:
    """An op as the model sees it; `value` is canonical JSON text, `version` what the server answered."""

    op: Op
    f: str
    value: str
    version: int | None
    expected: int | None
    refused: bool
    indeterminate: bool
    call: int
    ret: int

    def step(self, state: tuple) -> tuple[bool, tuple]:
        """Whether this op is legal in `state`, and the state after it."""
        version, value = state
        if self.f == "read":
            return self.value == value and self.version in (None, version), state
        if self.refused:
            return version != self.expected, state
        if self.f == "cas" and version != self.expected:
            return False, state
        return self.version in (None, version + 1), (version + 1, self.value)


class _Entry:
    """A call or a return in the linked list; a call's `match` is its return."""

    __slots__ = ("index", "is_call", "match", "prev", "next")

    def __init__(self, index: int | None, is_call: bool):
        self.index, self.is_call = index, is_call
        self.match = self.prev = self.next = None

    def lift(self) -> None:
        """Unlink this call and its return."""
        self.prev.next = self.next
        self.next.prev = self.prev
        match = self.match
        match.prev.next = match.next
        if match.next is not None:
            match.next.prev = match.prev

    def unlift(self) -> None:
        """Relink this call and its return, exactly where they were (the reverse of lift)."""
        match = self.match
        match.prev.next = match
        if match.next is not None:
            match.next.prev = match
        self.prev.next = self
        self.next.prev = self


def model_calls(ops: list[Op]) -> list[_Call]:
    """One key's operations as the model sees them, the ones that cannot matter dropped."""
    calls = []
    for op in ops:
        refused = op.f == "cas" and op.type == "fail" and op.error == CAS_MISMATCH
        if (op.f == "read" and op.type != "ok") or (op.type == "fail" and not refused):
            continue
        value = op.value if op.f == "read" else op.written
        expected = op.value[0] if op.f == "cas" else None
        ret = RETURN_NEVER if op.type == "info" else op.ret
        version = op.version if op.type == "ok" else None
        calls.append(_Call(op, op.f, canonical(value), version, expected, refused, op.type == "info", op.call, ret))
    return calls


def _linked(calls: list[_Call]) -> _Entry:
    events = sorted([(call.call, 0, index) for index, call in enumerate(calls)]
                    + [(call.ret, 1, index) for index, call in enumerate(calls)])
    head = previous = _Entry(None, False)
    opened: dict[int, _Entry] = {}
    for _, kind, index in events:
        entry = _Entry(index, kind == 0)
        entry.prev, previous.next = previous, entry
        if kind == 0:
            opened[index] = entry
        else:
            opened[index].match = entry
        previous = entry
    return head


def check_register(ops: list[Op], budget: int = steps_max) -> dict:
    """The verdict per register key, and overall: False if any key is not linearizable, else "unknown" if any
    search ran out of budget. The violating ops are each invalid key's stuck op and its candidates."""
    keys = {key: check_key(key_ops, budget) for key, key_ops in sorted(by_key(ops).items())}
    violating = {op_id for verdict in keys.values() if verdict["valid"] is False
                 for op_id in [verdict["stuck_at"], *verdict["candidates"]]}
    return {"valid": combine(verdict["valid"] for verdict in keys.values()), "keys": keys,
            "violating_ops": sorted(violating)}


def check_key(ops: list[Op], budget: int = steps_max) -> dict:
    """The verdict for one key's operations: valid True, False or "unknown", with the steps taken; when False,
    the op the search got stuck at, the longest linearizable prefix found and the candidates tried there."""
    calls = model_calls(ops)
    started = time.perf_counter()
    verdict = _search(calls, budget)
    verdict.update(ops=len(calls), indeterminate=sum(call.indeterminate for call in calls),
                   seconds=round(time.perf_counter() - started, 4))
    return verdict


def _search(calls: list[_Call], budget: int) -> dict:
    head = _linked(calls)
    state, linearized = INITIAL, 0
    cache: set[tuple[int, tuple]] = set()
    stack: list[tuple[_Entry, tuple]] = []
    deepest: dict = {"depth": -1}
    entry = head.next
    for steps in range(budget):
        if entry is None or (not entry.is_call and calls[entry.index].indeterminate):
            return {"valid": True, "steps": steps}
        if not entry.is_call:
            if len(stack) > deepest["depth"]:
                deepest = _stuck(calls, head, entry, stack, state)
            if not stack:
                return {"valid": False, "steps": steps, **_witness(deepest)}
            entry, state = stack.pop()
            linearized &= ~(1 << entry.index)
            entry.unlift()
            entry = entry.next
            continue
        legal, after = calls[entry.index].step(state)
        attempt = linearized | (1 << entry.index)
        if legal and (attempt, after) not in cache:
            cache.add((attempt, after))
            stack.append((entry, state))
            state, linearized = after, attempt
            entry.lift()
            entry = head.next
        else:
            entry = entry.next
    return {"valid": "unknown", "steps": budget, "reason": f"the search exceeded its budget of {budget} steps"}


def _stuck(calls: list[_Call], head: _Entry, returned: _Entry, stack: list, state: tuple) -> dict:
    """The deepest point so far: the ops linearized (with the state each left), the op whose return came
    before it could be linearized, and the calls still open there, which could not go next."""
    prefix, candidates = [], []
    afters = [before for _, before in stack[1:]] + [state] if stack else []  # each op's state is the next's before
    for (entry, _), after in zip(stack, afters, strict=True):
        prefix.append({"op": calls[entry.index].op.id, "state": [after[0], json.loads(after[1])]})
    entry = head.next
    while entry is not returned:  # bounded: `returned` is in the list
        if entry.is_call and entry.index != returned.index:
            candidates.append(calls[entry.index].op.id)
        entry = entry.next
    return {"depth": len(stack), "stuck_at": calls[returned.index].op.id, "prefix": prefix, "candidates": candidates}


def _witness(deepest: dict) -> dict:
    return {"stuck_at": deepest["stuck_at"], "longest_prefix": deepest["prefix"][-witnesses_max:],
            "longest_prefix_length": deepest["depth"], "candidates": deepest["candidates"][:witnesses_max]}
