"""The report of bench/cluster_bench.py: ratio tables, the elections and memory lines, the markdown file and the
PNG of throughput against concurrency. Everything is computed from the records of one run only."""

import pathlib

LABEL_VAULTD, LABEL_SPREAD, LABEL_FORWARDED = "vaultd3", "vaultd3-spread", "vaultd3-via-standby"
LABEL_ETCD, LABEL_CEILING = "etcd3", "ceiling-vaultshape"
WRK_SUFFIX = "-wrk"
MEMORY_LIMIT_MB = 400
MEMORY_TARGET_KEYS = 100_000
# (label, op, legend, colour, line style) of every line of the PNG; the absent ones are left out.
SERIES = [
    (LABEL_VAULTD, "put", "vaultd put (leader)", "tab:blue", "-"),
    (LABEL_VAULTD, "get", "vaultd get (leader, linearizable)", "tab:green", "-"),
    (LABEL_SPREAD, "get", "vaultd get (spread over 3 nodes)", "tab:olive", "-"),
    (LABEL_FORWARDED, "put", "vaultd put (via a standby)", "tab:cyan", "-"),
    (LABEL_VAULTD, "encrypt", "vaultd transit encrypt 1 KiB (leader)", "tab:purple", "-"),
    (LABEL_ETCD, "put", "etcd put (leader)", "tab:blue", "--"),
    (LABEL_ETCD, "get", "etcd get (leader, linearizable)", "tab:green", "--"),
    (LABEL_ETCD, "get-serializable", "etcd get serializable (spread)", "tab:olive", "--"),
    (LABEL_CEILING, "put", "ceiling put (aiohttp, dict)", "tab:blue", ":"),
    (LABEL_CEILING, "get", "ceiling get (aiohttp, dict)", "tab:green", ":"),
    (LABEL_VAULTD + WRK_SUFFIX, "put", "vaultd put (wrk)", "tab:red", "-."),
    (LABEL_VAULTD + WRK_SUFFIX, "get", "vaultd get (wrk)", "tab:pink", "-."),
    (LABEL_ETCD + WRK_SUFFIX, "put", "etcd put (wrk)", "tab:brown", "-."),
    (LABEL_ETCD + WRK_SUFFIX, "get", "etcd get (wrk)", "tab:gray", "-."),
]


MARKERS = {"-": "o", "--": "s", ":": "^", "-.": "x"}  # vaultd, etcd, ceiling, wrk


def ratio(numerator: dict | None, denominator: dict | None) -> str:
    if not numerator or not denominator or not denominator.get("ops_per_s"):
        return "-"
    return f"{numerator['ops_per_s'] / denominator['ops_per_s']:.2f}"


def ops(record: dict | None) -> str:
    return f"{record['ops_per_s']:,.0f}" if record else "-"


def latency(record: dict | None, field: str) -> str:
    return "-" if not record or record.get(field) is None else f"{record[field]:.2f}"


def index(records: list[dict]) -> dict:
    return {(r.get("label"), r.get("op"), r.get("concurrency")): r for r in records}


def concurrencies(records: list[dict]) -> list[int]:
    return sorted({r["concurrency"] for r in records
                   if r.get("label") in (LABEL_VAULTD, LABEL_CEILING, LABEL_ETCD) and r.get("concurrency")})


def tables(records: list[dict]) -> str:
    return "\n".join([*main_table(records), "", *spread_table(records), "", *forwarded_table(records),
                      *wrk_table(records)])


def main_table(records: list[dict]) -> list[str]:
    by = index(records)
    lines = ["vaultd3 (on the leader) vs etcd3 (on the leader) vs the ceiling, same client, same run:", "",
             "| op | c | vaultd3 ops/s | p50 ms | p99 ms | etcd3 ops/s | vaultd ÷ etcd | ceiling ops/s | "
             "vaultd ÷ ceiling |", "|---|---|---|---|---|---|---|---|---|"]
    for op in ("put", "get", "encrypt"):
        for c in concurrencies(records):
            vaultd, etcd = by.get((LABEL_VAULTD, op, c)), by.get((LABEL_ETCD, op, c))
            ceiling = by.get((LABEL_CEILING, "put" if op == "encrypt" else op, c))
            if op == "encrypt" and not vaultd:
                continue
            etcd_ops, etcd_ratio = ("n/a: no transit", "-") if op == "encrypt" else (ops(etcd), ratio(vaultd, etcd))
            lines.append(f"| {op} | {c} | {ops(vaultd)} | {latency(vaultd, 'p50_ms')} | {latency(vaultd, 'p99_ms')} | "
                         f"{etcd_ops} | {etcd_ratio} | {ops(ceiling)} | {ratio(vaultd, ceiling)} |")
    if any(key[:2] == (LABEL_VAULTD, "encrypt") for key in by):
        lines += ["", "encrypt = transit encrypt of 1 KiB on the leader (key `bench`, aes256-gcm96); etcd has no "
                  "transit engine, so no etcd ratio; its ceiling is the ceiling's POST (the Vault-shaped put)."]
    return lines


def spread_table(records: list[dict]) -> list[str]:
    by = index(records)
    lines = ["reads spread over all three nodes vs reads on the leader only (etcd: serializable gets on all "
             "members vs linearizable gets on the leader):", "",
             "| c | leader-only ops/s | spread ops/s | spread ÷ leader | per node | etcd3 spread ÷ leader |",
             "|---|---|---|---|---|---|"]
    for c in concurrencies(records):
        spread = by.get((LABEL_SPREAD, "get", c))
        if spread or by.get((LABEL_ETCD, "get-serializable", c)):
            nodes = " ".join(f"{node}={value:,.0f}" for node, value in (spread or {}).get("nodes", {}).items())
            lines.append(f"| {c} | {ops(by.get((LABEL_VAULTD, 'get', c)))} | {ops(spread)} | "
                         f"{ratio(spread, by.get((LABEL_VAULTD, 'get', c)))} | {nodes or '-'} | "
                         f"{ratio(by.get((LABEL_ETCD, 'get-serializable', c)), by.get((LABEL_ETCD, 'get', c)))} |")
    return lines


def forwarded_table(records: list[dict]) -> list[str]:
    by = index(records)
    lines = ["writes sent to a standby (forwarded) vs writes sent to the leader:", "",
             "| c | via standby ops/s | p99 ms | on leader ops/s | standby ÷ leader |", "|---|---|---|---|---|"]
    for c in concurrencies(records):
        forwarded = by.get((LABEL_FORWARDED, "put", c))
        if forwarded:
            lines.append(f"| {c} | {ops(forwarded)} | {latency(forwarded, 'p99_ms')} | "
                         f"{ops(by.get((LABEL_VAULTD, 'put', c)))} | "
                         f"{ratio(forwarded, by.get((LABEL_VAULTD, 'put', c)))} |")
    return lines


def wrk_table(records: list[dict]) -> list[str]:
    by = index(records)
    vaultd, etcd = LABEL_VAULTD + WRK_SUFFIX, LABEL_ETCD + WRK_SUFFIX
    points = sorted({(r["op"], r["concurrency"]) for r in records if r.get("label") in (vaultd, etcd)})
    if not points:
        return []
    lines = ["", "the same on the leaders driven by wrk (a C client, ~0.1 core instead of ~1):", "",
             "| op | c | vaultd3 ops/s | p99 ms | etcd3 ops/s | p99 ms | vaultd ÷ etcd |",
             "|---|---|---|---|---|---|---|"]
    for op, c in points:
        mine, theirs = by.get((vaultd, op, c)), by.get((etcd, op, c))
        lines.append(f"| {op} | {c} | {ops(mine)} | {latency(mine, 'p99_ms')} | {ops(theirs)} | "
                     f"{latency(theirs, 'p99_ms')} | {ratio(mine, theirs)} |")
    return lines


def findings(records: list[dict]) -> list[str]:
    """The elections line and the memory lines, from the `elections` and `memory-*` records."""
    lines = []
    for record in sorted(records, key=lambda r: r.get("op") != "elections"):
        if record.get("op") == "elections":
            lines.append(f"elections during the vaultd runs: {record['elections']} (term {record['term_before']} -> "
                         f"{record['term_after']}, leader {record['leader_before']} -> {record['leader_after']})")
            if record["points_with_elections"]:
                lines.append("  the term moved during: " + "; ".join(record["points_with_elections"]))
        elif str(record.get("op", "")).startswith("memory-"):
            lines += memory_lines(record)
    return lines


def memory_lines(record: dict) -> list[str]:
    nodes = ", ".join(f"{node} {value['rss_mb']:.0f} MB (peak {value['hwm_mb']:.0f})"
                      for node, value in record["nodes"].items())
    verdict = "met" if record["met"] else "not met"
    lines = [f"memory per node (VmRSS, peak VmHWM) with {record['keys_written']:,} keys of 100 bytes written "
             f"({record['fill_ops_per_s']:,.0f} writes/s at c={record['fill_concurrency']}): {nodes}",
             f"  ≤ {MEMORY_LIMIT_MB} MB: {verdict} (largest VmRSS {record['max_rss_mb']:.0f} MB)"]
    if record["keys"] != MEMORY_TARGET_KEYS:
        lines.append(f"  (a {record['keys']:,}-key data set, not the issue's {MEMORY_TARGET_KEYS:,}: "
                     f"--memory-keys {record['keys']})")
    if not record["complete"]:
        lines.append(f"  only {record['keys_written']:,} of {record['keys']:,} keys were written within "
                     f"{record['fill_bound_s']:.0f} s: the memory figures are for the smaller data set")
    return lines


def report_text(records: list[dict], notes: list[str]) -> str:
    """The tables, then one bullet per finding (elections, memory) and per note (skipped, failed)."""
    return "\n".join([tables(records), "", *(f"- {line.strip()}" for line in findings(records) + notes)]) + "\n"


def markdown(records: list[dict], notes: list[str], command: str, image: str | None) -> str:
    parts = ["# vaultd 3-node cluster vs etcd 3-node vs the aiohttp ceiling", "",
             f"`{command}` — every ratio pairs two figures measured in this run.", "", report_text(records, notes)]
    if image:
        parts += [f"![ops/s against concurrency]({image})", ""]
    return "\n".join(parts)


def plot(records: list[dict], path: pathlib.Path) -> bool:
    """ops/s against concurrency (log x), one line per system and op; False if there is nothing to draw."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    by, ticks = index(records), set()
    figure, axes = pyplot.subplots(figsize=(10, 6.5))
    for label, op, legend, colour, style in SERIES:
        points = sorted((c, r["ops_per_s"]) for (lab, o, c), r in by.items() if (lab, o) == (label, op) and c)
        if points:
            axes.plot(*zip(*points, strict=True), style, color=colour, marker=MARKERS[style], label=legend)
            ticks.update(c for c, _ in points)
    if not ticks:
        pyplot.close(figure)
        return False
    ticks = sorted(ticks)
    axes.set_xscale("log", base=2)
    axes.set_xticks(ticks, [str(c) for c in ticks])
    axes.set_xticks([], minor=True)
    axes.set_ylim(bottom=0)
    axes.set(xlabel="concurrency (client connections)", ylabel="ops/s",
             title="throughput against concurrency: vaultd 3 nodes (solid), etcd 3 nodes (dashed), ceiling (dotted)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
    return True
