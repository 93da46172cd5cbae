"""The set workload (Jepsen's set-full, jepsen.md §6.2 W2): no acknowledged add is lost, nothing unexpected
appears, and every node's final read holds the same elements.

Per set key, over its adds and its reads (LISTs through the active node, so linearizable):
- lost: an ok add missing from a final read;
- unexpected: an element in a read that no add ever tried;
- stale: an ok add missing from a read invoked after the add completed;
- flicker: an element a read showed, missing from a read invoked after that one completed;
- divergent: a final read whose elements differ from the first final read's (the nodes did not converge);
- recovered (a figure, not a fault): info adds present in the final reads.
With no ok final read, nothing can be said about loss: the verdict is "unknown".
"""

from .ops import Op, by_key, capped, combine


def check_set(ops: list[Op]) -> dict:
    """The verdict over the set workload's operations, per set key."""
    keys = {key: _check_one(key_ops) for key, key_ops in by_key(ops).items()}
    valid = combine(result["valid"] for result in keys.values())
    violating = sorted({op_id for result in keys.values() for op_id in result.pop("violating_ops")})
    return {"valid": valid, "keys": keys, "violating_ops": violating}


def _check_one(ops: list[Op]) -> dict:
    adds = [op for op in ops if op.f == "add"]
    acknowledged = {op.value: op for op in adds if op.type == "ok"}
    reads = sorted((op for op in ops if op.f == "read" and op.type == "ok"), key=lambda op: op.call)
    finals = [read for read in reads if read.final]
    findings = {"lost": _lost(acknowledged, finals), "unexpected": _unexpected({op.value for op in adds}, reads),
                "divergent": _divergent(finals), **_vanished(acknowledged, reads)}
    shown = set().union(*(read.value for read in finals))
    result = {
        "adds": len(adds), "acknowledged": len(acknowledged),
        "indeterminate": sum(op.type == "info" for op in adds),
        "recovered": sum(op.type == "info" and op.value in shown for op in adds),
        "final_reads": len(finals), "final_reads_failed": sum(op.final and op.type != "ok" for op in ops),
        "converged": bool(finals) and not findings["divergent"],
        **{kind: capped(found) for kind, found in findings.items()},
        "violating_ops": {op_id for found in findings.values() for finding in found for op_id in finding["ops"]},
    }
    result["valid"] = False if any(findings.values()) else True if finals else "unknown"
    if not finals:
        result["reason"] = "no final read succeeded, so no loss can be ruled out"
    return result


def _lost(acknowledged: dict, finals: list[Op]) -> list[dict]:
    kept = set.intersection(*(set(read.value) for read in finals)) if finals else set(acknowledged)
    return [{"element": element, "ops": [add.id]} for element, add in acknowledged.items() if element not in kept]


def _unexpected(attempted: set, reads: list[Op]) -> list[dict]:
    found: dict = {}
    for read in reads:
        for element in set(read.value) - attempted:
            found.setdefault(element, {"element": element, "ops": [read.id]})
    return list(found.values())


def _divergent(finals: list[Op]) -> list[dict]:
    if not finals:
        return []
    first = set(finals[0].value)
    return [{"node": read.node, "ops": [finals[0].id, read.id], "missing": sorted(first - set(read.value), key=str),
             "extra": sorted(set(read.value) - first, key=str)} for read in finals[1:] if set(read.value) != first]


def _vanished(acknowledged: dict, reads: list[Op]) -> dict[str, list[dict]]:
    """Stale and flicker: an element missing from a read invoked after it was known present, by an ok add
    (stale) or by a read that showed it (flicker). One finding per element, its first."""
    shown_by: dict = {}
    for read in sorted(reads, key=lambda op: op.ret):
        for element in read.value:
            shown_by.setdefault(element, read)
    stale = _missing_after(acknowledged, reads)
    flicker = {element: finding for element, finding in _missing_after(shown_by, reads).items()
               if element not in stale}
    return {"stale": list(stale.values()), "flicker": list(flicker.values())}


def _missing_after(witnesses: dict, reads: list[Op]) -> dict:
    """Per element, the first read (`reads` by invocation time) invoked after its witness op completed that
    does not hold it."""
    arrivals = sorted(witnesses.items(), key=lambda item: item[1].ret)
    known: dict = {}
    found: dict = {}
    arrived = 0
    for read in reads:
        while arrived < len(arrivals) and arrivals[arrived][1].ret < read.call:  # bounded by len(arrivals)
            element, witness = arrivals[arrived]
            known[element] = witness
            arrived += 1
        for element in sorted(known.keys() - set(read.value) - found.keys(), key=str):
            found[element] = {"element": element, "ops": [known[element].id, read.id]}
    return found
