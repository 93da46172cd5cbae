"""The version checker (jepsen.md §3.4): KV v2 answers every write and read with the key's version, so some
anomalies show on the ok operations alone, in O(n log n) whatever the number of info operations. Sound (no
false alarm, given the version semantics) but incomplete: it backs WGL up when WGL says "unknown".

Per key, over register and session operations:
- conflict: one version seen with two values (split brain, a lost or overwritten write, two CAS winners), or
  version 0 (absent) with a value;
- phantom: a read returned a value no write that may have happened ever wrote (a "fail" write did not);
- stale read: a register read returned a version below one already seen completed before it was invoked
  (session reads may be stale by design; the session checker judges them);
- write order: a write got a version not above one already seen completed before it was invoked;
- lost: the stale read is the key's last read: an acknowledged version is gone for good.
"""

from .ops import Op, by_key, canonical, capped

_ABSENT = canonical(None)


def check_versions(ops: list[Op]) -> dict:
    """The findings over `ops` (register and session operations), each kind counted and its first listed."""
    findings: dict[str, list] = {"conflicts": [], "phantoms": [], "stale_reads": [], "write_order": [], "lost": []}
    keys = by_key(ops)
    for key, key_ops in keys.items():
        findings["conflicts"] += _conflicts(key, key_ops)
        findings["phantoms"] += _phantoms(key, key_ops)
        stale, disordered = _sweep(key, key_ops)
        findings["stale_reads"] += stale
        findings["write_order"] += disordered
        findings["lost"] += _lost(key_ops, stale)
    violating = {op_id for found in findings.values() for finding in found for op_id in finding["ops"]}
    return {"valid": not any(findings.values()), "keys": len(keys),
            **{kind: capped(found) for kind, found in findings.items()}, "violating_ops": sorted(violating)}


def _versioned(ops: list[Op]) -> list[Op]:
    return [op for op in ops if op.type == "ok" and op.version is not None]


def _conflicts(key: str, ops: list[Op]) -> list[dict]:
    """Each op whose value differs from the first one seen with its version."""
    first_seen: dict[int, tuple[object, Op | None]] = {0: (None, None)}
    found = []
    for op in _versioned(ops):
        first_value, first = first_seen.setdefault(op.version, (_observed(op), op))
        if canonical(_observed(op)) != canonical(first_value):
            found.append({"key": key, "version": op.version, "ops": [o.id for o in (first, op) if o is not None],
                          "values": [first_value, _observed(op)]})
    return found


def _observed(op: Op):
    return op.value if op.f == "read" else op.written


def _phantoms(key: str, ops: list[Op]) -> list[dict]:
    written = {canonical(op.written) for op in ops if op.writes and op.type != "fail"} | {_ABSENT}
    return [{"key": key, "ops": [op.id], "value": op.value} for op in ops
            if op.f == "read" and op.type == "ok" and canonical(op.value) not in written]


def _sweep(key: str, ops: list[Op]) -> tuple[list[dict], list[dict]]:
    """Invocations and completions in time order (invocations first at equal times: intervals are closed),
    keeping the highest version completed so far."""
    versioned = _versioned(ops)
    events = sorted([(op.call, 0, op.id, op) for op in versioned] + [(op.ret, 1, op.id, op) for op in versioned],
                    key=lambda event: event[:3])
    top: Op | None = None
    stale, disordered = [], []
    for _, kind, _, op in events:
        if kind == 1:
            top = op if top is None or op.version > top.version else top
        elif top is None:
            continue
        elif op.f == "read" and op.workload == "reg" and op.version < top.version:
            stale.append({"key": key, "ops": [op.id, top.id], "version": op.version, "newer_version": top.version})
        elif op.writes and op.version <= top.version:
            disordered.append({"key": key, "ops": [op.id, top.id], "version": op.version,
                               "newer_version": top.version})
    return stale, disordered


def _lost(ops: list[Op], stale: list[dict]) -> list[dict]:
    reads = [op for op in _versioned(ops) if op.f == "read" and op.workload == "reg"]
    if not reads:
        return []
    last = max(reads, key=lambda op: (op.call, op.id))
    return [finding for finding in stale if finding["ops"][0] == last.id]
