"""The session workload (jepsen.md §6.2 W3): reads from standbys with X-Vault-Index give read-your-writes and
monotonic reads; reads without it may be stale, and how stale is a figure, not a fault.

Per process (a session; a worker that crashed goes on as a fresh one, which only weakens the check), in
invocation order, for every key it touched:
- read-your-writes: an ok tokenised read returns at least the version of the session's own last ok write;
- monotonic reads: an ok tokenised read returns at least the version of the session's last tokenised read;
- forwarded stale: either of those on a read sent with X-Vault-Inconsistent: forward-active-node;
- token regression: an ok write whose X-Vault-Index (when a decimal raft index) is not above the session's
  previous write's.
A 412 (the standby had not caught up, and the client retries) is counted, not faulted.

Untokenised ok reads are measured against the ok writes of their key completed before they were invoked:
"versions behind" the newest of those, and "ms behind" since the first write newer than the version read.
"""

import bisect

from .ops import Op, by_key, capped, percentile


def check_sessions(ops: list[Op]) -> dict:
    """The verdict over the session workload's operations."""
    violations, regressions = [], []
    for process_ops in _by_process(ops).values():
        violations += _read_your_writes(process_ops)
        regressions += _token_regressions(process_ops)
    tokenised = [op for op in ops if op.f == "read" and op.index_token_sent is not None]
    refused = [op for op in tokenised if op.http_status == 412]
    forwarded = [op for op in tokenised if op.forward]
    return {
        "valid": not (violations or regressions),
        "tokenised_reads": len(tokenised), "retries_412": len(refused),
        "retry_412_percent": round(100 * len(refused) / len(tokenised), 1) if tokenised else None,
        "forwarded_reads": len(forwarded), "forwarded_412": sum(op.forward for op in refused),
        "forwarded_stale": sum(violation["forwarded"] for violation in violations),
        "violations": capped(violations), "token_regressions": capped(regressions),
        "staleness": _staleness(ops),
        "violating_ops": sorted({op_id for found in violations + regressions for op_id in found["ops"]}),
    }


def _by_process(ops: list[Op]) -> dict[int, list[Op]]:
    processes: dict[int, list[Op]] = {}
    for op in sorted(ops, key=lambda op: op.call):
        processes.setdefault(op.process, []).append(op)
    return processes


def _read_your_writes(ops: list[Op]) -> list[dict]:
    known: dict[str, Op] = {}  # key -> the session's op that showed it the highest version
    found = []
    for op in ops:
        if op.type != "ok" or op.version is None:
            continue
        if op.f == "read" and op.index_token_sent is None:
            continue
        prior = known.get(op.key)
        if op.f == "read" and prior is not None and op.version < prior.version:
            found.append({"kind": "read-your-writes" if prior.f == "write" else "monotonic-reads",
                          "key": op.key, "ops": [prior.id, op.id], "version": op.version,
                          "expected_at_least": prior.version, "forwarded": op.forward})
        if prior is None or op.version > prior.version:
            known[op.key] = op
    return found


def _token_regressions(ops: list[Op]) -> list[dict]:
    writes = [op for op in ops if op.f == "write" and op.type == "ok" and (op.index_token or "").isdigit()]
    return [{"ops": [before.id, after.id], "index_tokens": [before.index_token, after.index_token]}
            for before, after in zip(writes, writes[1:], strict=False)
            if int(after.index_token) <= int(before.index_token)]


def _staleness(ops: list[Op]) -> dict:
    versions_behind, ms_behind = [], []
    for key_ops in by_key(ops).values():
        writes = sorted((op for op in key_ops if op.f == "write" and op.type == "ok" and op.version is not None),
                        key=lambda op: op.ret)
        completed = [op.ret for op in writes]
        newest = _running_max([op.version for op in writes])
        for read in key_ops:
            if read.f != "read" or read.type != "ok" or read.index_token_sent is not None or read.version is None:
                continue
            before = bisect.bisect_left(completed, read.call)
            behind = max(0, newest[before - 1] - read.version) if before else 0
            versions_behind.append(behind)
            if behind:
                superseded = bisect.bisect_right(newest, read.version)
                ms_behind.append((read.call - completed[superseded]) / 1e6)
    versions_behind.sort()
    ms_behind.sort()
    histogram: dict[int, int] = {}
    for behind in versions_behind:
        histogram[behind] = histogram.get(behind, 0) + 1
    return {"reads": len(versions_behind), "stale": len(ms_behind), "versions_behind_histogram": histogram,
            "versions_behind_p99": percentile(versions_behind, 0.99),
            "versions_behind_max": percentile(versions_behind, 1.0), "ms_behind_p50": percentile(ms_behind, 0.5),
            "ms_behind_p99": percentile(ms_behind, 0.99), "ms_behind_max": percentile(ms_behind, 1.0)}


def _running_max(values: list[int]) -> list[int]:
    highest, out = 0, []
    for value in values:
        highest = max(highest, value)
        out.append(highest)
    return out
