"""The printed summary of a checked run (jepsen.md §6.6): one line per subject, the verdict last."""

VERDICT_WORDS = {True: "PASS", False: "FAIL", "unknown": "UNKNOWN"}
_YES_NO = {True: "YES", False: "NO", "unknown": "UNKNOWN"}


def summarize(meta: dict, result: dict) -> str:
    lines = [_heading(meta, result["perf"]), _ops(result["perf"])]
    lines += [line(result[name]) for name, line in _section_lines().items() if name in result]
    lines += [_lost_writes(result), _availability(result["perf"]), _failover(result["perf"]), _latency(result["perf"]),
              _faults(result["perf"]), _verdict(result)]
    return "\n".join(lines)


def _section_lines() -> dict:
    return {"register": _register, "version": _version, "set": _set, "session": _session}


def _row(label: str, text: str) -> str:
    return f"{label:<15}{text}"


def _heading(meta: dict, perf: dict) -> str:
    facts = [f"{name}={meta[name]}" for name in ("run", "seed", "net") if name in meta]
    if isinstance(meta.get("nodes"), dict | list):
        facts.append(f"nodes={len(meta['nodes'])}")
    return "  ".join(["jepsen_lite", *facts, f"duration={perf['duration_s']:.1f}s"])


def _ops(perf: dict) -> str:
    types = perf["types"]
    per_f = "  ".join(f"{f} {c['ok']:,}/{c['fail']:,}/{c['info']:,}" for f, c in perf["by_f"].items())
    rate = f" | {perf['ops_per_second']:,} ops/s" if perf["ops_per_second"] is not None else ""
    return _row("ops", f"{perf['ops']:,} total | ok {types['ok']:,}  fail {types['fail']:,}  info {types['info']:,}"
                       f" | ok/fail/info: {per_f}{rate}")


def _register(register: dict) -> str:
    keys = register["keys"].values()
    counts = {word: sum(verdict["valid"] == value for verdict in keys) for value, word in
              ((True, "valid"), (False, "invalid"), ("unknown", "unknown"))}
    slowest = max((verdict["seconds"] for verdict in keys), default=0)
    infos = max((verdict["indeterminate"] for verdict in keys), default=0)
    return _row("linearizable", f"{_YES_NO[register['valid']]}  (register: {len(keys)} keys, "
                                f"{counts['valid']} valid, {counts['invalid']} invalid, {counts['unknown']} unknown; "
                                f"slowest key {slowest:.2f} s, max info/key {infos})")


def _version(version: dict) -> str:
    return _row("version check", f"stale reads {version['stale_reads']['count']} | version conflicts "
                                 f"{version['conflicts']['count']} | phantoms {version['phantoms']['count']} | "
                                 f"write order {version['write_order']['count']} | lost acked versions "
                                 f"{version['lost']['count']}")


def _set(sets: dict) -> str:
    keys = list(sets["keys"].values())
    converged = "yes" if all(result["converged"] for result in keys) else "NO"
    return _row("set", f"acked {_total(keys, 'acknowledged'):,} | lost {_total(keys, 'lost')} | unexpected "
                       f"{_total(keys, 'unexpected')} | stale {_total(keys, 'stale')} | flicker "
                       f"{_total(keys, 'flicker')} | recovered {_total(keys, 'recovered')}/"
                       f"{_total(keys, 'indeterminate')} info | final reads converge: {converged}")


def _total(results: list[dict], name: str) -> int:
    """A figure summed over set keys: a count, or the count of a kind of finding."""
    return sum(result[name]["count"] if isinstance(result[name], dict) else result[name] for result in results)


def _lost_writes(result: dict) -> str:
    register = result["version"]["lost"]["count"] if "version" in result else 0
    sets = _total(list(result["set"]["keys"].values()), "lost") if "set" in result else 0
    return _row("lost writes", f"{register + sets}  (register keys {register}, set elements {sets})")


def _session(session: dict) -> str:
    staleness = session["staleness"]
    percent = f" ({session['retry_412_percent']}%)" if session["retry_412_percent"] is not None else ""
    return _row("session (RYW)", f"tokenised reads {session['tokenised_reads']:,} | violations "
                                 f"{session['violations']['count']} | 412s {session['retries_412']}{percent} | "
                                 f"forwarded stale {session['forwarded_stale']} | untokenised stale "
                                 f"{staleness['stale']}/{staleness['reads']}, p99 "
                                 f"{_number(staleness['versions_behind_p99'])} versions / "
                                 f"{_number(staleness['ms_behind_p99'])} ms")


def _availability(perf: dict) -> str:
    availability = perf["availability"]
    per_fault = ", ".join(f"{fault} {_percent(share)}" for fault, share in availability["by_fault"].items())
    return _row("availability", f"outside faults {_percent(availability['outside'])} | during faults "
                                f"{_percent(availability['during'])}" + (f"  ({per_fault})" if per_fault else ""))


def _failover(perf: dict) -> str:
    failover = perf["failover_s"]
    return _row("failover", f"{failover['windows']} windows, {failover['recovered']} recovered | first ok write "
                            f"after fault p50 {_number(failover['p50'])} s max {_number(failover['max'])} s | "
                            f"longest write gap {_number(perf['longest_write_gap_s'])} s")


def _latency(perf: dict) -> str:
    outside, during = perf["latency_ms"]["outside"], perf["latency_ms"]["during"]
    return _row("latency", f"p50/p99 outside {_number(outside['p50'])} ms / {_number(outside['p99'])} ms | "
                           f"during faults {_number(during['p50'])} ms / {_number(during['p99'])} ms")


def _faults(perf: dict) -> str:
    names = ", ".join(window["fault"] for window in perf["windows"])
    return _row("faults", f"{len(perf['windows'])} windows" + (f": {names}" if names else ""))


def _verdict(result: dict) -> str:
    reasons = [f"{name} {VERDICT_WORDS[result[name]['valid']]}" for name in _section_lines()
               if name in result and result[name]["valid"] is not True]
    reasons += [result["reason"]] if "reason" in result else []
    return _row("VERDICT", VERDICT_WORDS[result["valid"]] + (f"  ({', '.join(reasons)})" if reasons else ""))


def _percent(share: float | None) -> str:
    return "n/a" if share is None else f"{100 * share:.1f}%"


def _number(value) -> str:
    return "n/a" if value is None else f"{value:.3g}" if isinstance(value, float) else str(value)
