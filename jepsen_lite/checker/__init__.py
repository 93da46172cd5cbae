"""The checkers, run over a whole history for one verdict (jepsen.md §6.5).

    pair        records -> operations (invocation + completion) and fault windows      ops.py
    register    per-key linearizability, Wing & Gong search with a step budget           wgl.py
    version     version conflicts, phantoms, stale reads, write order, lost versions     version.py
    set         lost, unexpected, stale, flicker, convergence of the final reads         setfull.py
    session     read-your-writes, monotonic reads, staleness of untokenised reads        session.py
    perf        counts, rate, latencies, availability and failover per fault window      perf.py

`check(records)` returns a dict, JSON as it is:

    valid          True | False | "unknown": False if any checker found a violation, else "unknown" if any
                   could not decide (a search out of budget, no final set read, no client op at all)
    register       {"valid", "keys": {key: {"valid", "ops", "indeterminate", "steps", "seconds",
                   and when False: "stuck_at", "longest_prefix", "longest_prefix_length", "candidates"}}}
    version        {"valid", "keys", "conflicts", "phantoms", "stale_reads", "write_order", "lost"}
    set            {"valid", "keys": {key: {"valid", "acknowledged", "lost", "unexpected", "stale", "flicker",
                   "divergent", "converged", "recovered", ...}}}
    session        {"valid", "tokenised_reads", "violations", "token_regressions", "retries_412", "staleness", ...}
    perf           figures only (perf.py)
    violating_ops  the ids (invocation indexes) of the operations that witness a violation

Each kind of finding is {"count": n, "first": [...]}, every finding naming its key and its "ops". A section is
present only when the history has operations of its workload.
"""

from . import wgl
from .ops import Paired, combine, pair
from .perf import measure
from .session import check_sessions
from .setfull import check_set
from .version import check_versions


def check(records: list[dict], budget: int = wgl.steps_max) -> dict:
    """The verdict over a history's records (as `history.load` returns them); `budget` is WGL's steps per key."""
    return check_paired(pair(records), budget)


def check_paired(paired: Paired, budget: int = wgl.steps_max) -> dict:
    register, session, sets = paired.of("reg"), paired.of("session"), paired.of("set")
    sections = {}
    if register:
        sections["register"] = wgl.check_register(register, budget)
    if register or session:
        sections["version"] = check_versions(register + session)
    if sets:
        sections["set"] = check_set(sets)
    if session:
        sections["session"] = check_sessions(session)
    violating = sorted({op_id for section in sections.values() for op_id in section["violating_ops"]})
    result = {"valid": combine(section["valid"] for section in sections.values()) if sections else "unknown"}
    if not sections:
        result["reason"] = "the history holds no client operation"
    return {**result, **sections, "perf": measure(paired), "violating_ops": violating}
