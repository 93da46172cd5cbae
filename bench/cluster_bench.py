#!/usr/bin/env python3
"""Three-node KV v2 benchmark: the vaultd Raft cluster against a 3-node etcd and the aiohttp ceiling, one run.

    cluster_bench.py [--seconds 5] [-c 1,8,32,64] [--quick] [--targets ceiling,etcd,vaultd] [--out FILE]

Every target is driven by ../shared/bench/loadgen.py (the one load generator), 100-byte values over 1,000
keys, each point --seconds long after a --warmup, one target at a time (the others are stopped):
1. the ceiling: ../shared/bench/ceiling_server.py serving Vault KV v2 shapes from a dict (no replication);
2. etcd: ../shared/bench/etcd_cluster.sh start 3 (Debian's etcd-server, fsync on); puts and linearizable
   gets sent to the leader, and serializable gets spread over the three members (`--pick all`);
3. vaultd: three real processes from vaultd.devcluster (Shamir seal, KV v2 mounted at secret/): puts and
   linearizable gets on the leader, puts sent to a standby (forwarded to the leader), and gets spread over
   all three nodes (standbys serve reads locally). loadgen's vault target hits one address, so the spread is
   one loadgen per node started together with the workers split between them; their ops/s are summed into
   one `vaultd3-spread` record (its latencies are the worst node's). Spread points need a concurrency >= 3.

It prints ratio tables (vaultd ÷ etcd, vaultd ÷ ceiling, spread ÷ leader-only) from the records of this run
only; `../shared/bench/summarize.py FILE --compare vaultd3:etcd3` works on the --out file. A missing
/usr/bin/etcd skips the etcd rows with the command that installs it. Servers are started here and stopped
by PID; every wait is bounded.
"""

import argparse
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time
import traceback

from kv_bench import SHARED, free_port, wait_up

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CEILING_TOKEN = "bench-token"
ETCD_BINARY = os.environ.get("ETCD", "/usr/bin/etcd")
ETCD_INSTALL = "apt-get install -y etcd-server etcd-client"
ETCD_SCRIPT = SHARED / "etcd_cluster.sh"
LABEL_VAULTD, LABEL_SPREAD, LABEL_FORWARDED = "vaultd3", "vaultd3-spread", "vaultd3-via-standby"
LABEL_ETCD, LABEL_CEILING = "etcd3", "ceiling-vaultshape"
# Bounds on everything that waits: one loadgen run is warm-up + measured time + prefill (<= 120 s in loadgen).
loadgen_overhead_seconds = 180
cluster_ready_seconds = 60
readable_wait_seconds = 20
server_stop_seconds = 15

assert loadgen_overhead_seconds > 120  # loadgen bounds its own prefill at 120 s


class Skipped(Exception):
    """A target that cannot run on this machine or right now; the message says why and how to fix it."""


def loadgen_command(target: str, ops: str, concurrency: str, label: str, pids: list[int], args, extra=()):
    return [sys.executable, str(SHARED / "loadgen.py"), target, ops, "-c", concurrency, "-d", str(args.seconds),
            "-w", str(args.warmup), "--pids", ",".join(map(str, pids)), "--label", label,
            "--quiet-wait", str(args.quiet_wait), *extra]


def run_loadgen(command: list[str], runs: int, args) -> list[dict]:
    budget = runs * (args.seconds + args.warmup + args.quiet_wait + 5) + loadgen_overhead_seconds
    done = subprocess.run(command, capture_output=True, text=True, timeout=budget)
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0:
        raise RuntimeError(f"loadgen failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    return records


def runs_of(ops: str, concurrency: str) -> int:
    return len(ops.split(",")) * len(concurrency.split(","))


def stop_process(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=server_stop_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=server_stop_seconds)


def measure_ceiling(args) -> list[dict]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, str(SHARED / "ceiling_server.py"), "--port", str(port), "--token", CEILING_TOKEN,
         "--max-seconds", "1800"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_up(url + "/get")
        command = loadgen_command("vault", "put,get", args.concurrency, LABEL_CEILING, [process.pid], args,
                                  ["--url", url, "--token", CEILING_TOKEN])
        return run_loadgen(command, runs_of("put,get", args.concurrency), args)
    finally:
        stop_process(process)


def etcd_script(*words: str) -> str:
    done = subprocess.run(["bash", str(ETCD_SCRIPT), *words], capture_output=True, text=True, timeout=90)
    if done.returncode != 0:
        raise Skipped(f"etcd_cluster.sh {' '.join(words)} failed: {(done.stderr or done.stdout).strip()}")
    return done.stdout.strip()


def start_etcd() -> tuple[str, list[int]]:
    """Start the shared 3-node etcd; returns (endpoints, pids). The caller stops it with `stop 3`."""
    if not os.access(ETCD_BINARY, os.X_OK):
        raise Skipped(f"{ETCD_BINARY} is missing: install Debian's etcd with `{ETCD_INSTALL}` (as root)")
    try:
        etcd_script("start", "3")
    except Skipped as failure:
        if "already started" in str(failure):  # another run's etcd: its PIDs are not ours to stop
            raise Skipped(f"{failure} (another run holds ports 23791-23803: wait for it)") from None
        etcd_script("stop", "3")  # members that did start, recorded by the script
        raise
    return etcd_script("endpoints", "3"), [int(pid) for pid in etcd_script("pids", "3").split(",")]


def measure_etcd(args) -> list[dict]:
    endpoints, pids = start_etcd()
    try:
        where = ["--endpoints", endpoints]
        records = run_loadgen(loadgen_command("etcd", "put,get", args.concurrency, LABEL_ETCD, pids, args,
                                              [*where, "--pick", "leader"]), runs_of("put,get", args.concurrency),
                              args)
        spread = spread_concurrency(args.concurrency)
        if spread:
            records += run_loadgen(loadgen_command("etcd", "get-serializable", spread, LABEL_ETCD, pids, args,
                                                   [*where, "--pick", "all"]), runs_of("get", spread), args)
        return records
    finally:
        etcd_script("stop", "3")


def spread_concurrency(concurrency: str) -> str:
    return ",".join(c for c in concurrency.split(",") if int(c) >= 3)


def ready_cluster(devcluster, directory: pathlib.Path):
    """A started, initialised, unsealed 3-node cluster with KV v2 at secret/; a context manager that stops it."""
    config = devcluster.write_config(directory, nodes=3)
    cluster = devcluster.DevCluster(config, log_dir=directory / "logs")
    try:
        cluster.start()
        cluster.initialize(shares=1, threshold=1)
        cluster.unseal()
        leader = cluster.wait_for_leader(cluster_ready_seconds)
        cluster.wait_healthy(cluster_ready_seconds)
        response = cluster.request(leader, "POST", "/v1/sys/mounts/secret",
                                   {"type": "kv", "options": {"version": "2"}}, token=cluster.root_token)
        if response.status not in (200, 204):
            raise RuntimeError(f"mounting secret/ on {leader}: HTTP {response.status} {response.body[:200]!r}")
    except BaseException:
        cluster.close()
        raise
    return cluster


def wait_readable(cluster, key: str) -> None:
    """Every node serves `key` (standbys apply the log asynchronously); bounded by readable_wait_seconds."""
    deadline = time.monotonic() + readable_wait_seconds
    for node in cluster.node_ids:
        while True:
            response = cluster.request(node, "GET", f"/v1/secret/data/{key}", token=cluster.root_token, timeout=2)
            if response.status == 200:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{node} does not serve secret/{key} after {readable_wait_seconds} s: "
                                   f"HTTP {response.status} {response.body[:200]!r}")
            time.sleep(0.1)


def measure_vaultd(args) -> list[dict]:
    try:
        from vaultd import devcluster
    except ImportError as error:
        raise Skipped(f"vaultd.devcluster is not there yet ({error})") from error
    with tempfile.TemporaryDirectory(prefix="cluster-bench-") as scratch, \
            ready_cluster(devcluster, pathlib.Path(scratch)) as cluster:
        return vaultd_points(cluster, args)


def vaultd_points(cluster, args) -> list[dict]:
    pids = [cluster.pid(node) for node in cluster.node_ids]
    token = ["--token", cluster.root_token]

    def on(node: str) -> list[str]:
        return ["--url", cluster.api_url(node), *token]

    leader = cluster.wait_for_leader(cluster_ready_seconds)
    records = run_loadgen(loadgen_command("vault", "put,get", args.concurrency, LABEL_VAULTD, pids, args,
                                          on(leader)), runs_of("put,get", args.concurrency), args)
    standby = next(node for node in cluster.node_ids if node != leader)
    records += run_loadgen(loadgen_command("vault", "put", args.concurrency, LABEL_FORWARDED, pids, args,
                                           [*on(standby), "--prefill", "no"]), runs_of("put", args.concurrency), args)
    wait_readable(cluster, "bench/k000000")
    wait_readable(cluster, "bench/k000999")
    for concurrency in spread_concurrency(args.concurrency).split(","):
        if concurrency:
            records += spread_reads(cluster, int(concurrency), pids, args)
    return records


def spread_reads(cluster, concurrency: int, pids: list[int], args) -> list[dict]:
    """One loadgen per node, started together, workers split between them; the sum is one record."""
    nodes = cluster.node_ids
    shares = [concurrency // len(nodes) + (index < concurrency % len(nodes)) for index in range(len(nodes))]
    commands = [loadgen_command("vault", "get", str(share), f"{LABEL_SPREAD}-{node}", pids, args,
                                ["--url", cluster.api_url(node), "--token", cluster.root_token, "--prefill", "no"])
                for node, share in zip(nodes, shares, strict=True)]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for command in commands]
    deadline = time.monotonic() + args.seconds + args.warmup + args.quiet_wait + loadgen_overhead_seconds
    parts, failures = [], []
    for node, process in zip(nodes, processes, strict=True):  # reap every one before reporting any failure
        try:
            stdout, stderr = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate(timeout=server_stop_seconds)
        parts += [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
        if process.returncode != 0:
            failures.append(f"{node}: exit {process.returncode}: {stderr.strip()[-300:]}")
    if failures or len(parts) != len(nodes):
        raise RuntimeError(f"spread loadgen failed: {'; '.join(failures) or 'a run printed no record'}")
    return [*parts, sum_parts(parts, concurrency, nodes)]


def sum_parts(parts: list[dict], concurrency: int, nodes: list[str]) -> dict:
    total = dict(parts[0])
    total.update({
        "label": LABEL_SPREAD, "concurrency": concurrency, "procs": len(parts),
        "ops": sum(part["ops"] for part in parts), "ops_per_s": round(sum(part["ops_per_s"] for part in parts), 1),
        "errors": sum(part["errors"] for part in parts),
        "client_cpu_cores": round(sum(part["client_cpu_cores"] for part in parts), 3),
        "nodes": {node: part["ops_per_s"] for node, part in zip(nodes, parts, strict=True)},
        "latency": "worst node", "url": None,
    })
    for field in ("p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms"):
        values = [part[field] for part in parts if part.get(field) is not None]
        total[field] = max(values) if values else None
    samples = [sample for part in parts for sample in part.get("err_sample", [])][:3]
    total.pop("err_sample", None)
    if samples:
        total["err_sample"] = samples
    # All three loadgens sampled the same server PIDs over nearly the same window: keep one reading.
    total["other_cores"] = round(max(0.0, total["sys_busy_cores"] - total.get("server_cpu_cores", 0.0)
                                     - total["client_cpu_cores"]), 3)
    return total


def ratio(numerator: dict | None, denominator: dict | None) -> str:
    if not numerator or not denominator or not denominator.get("ops_per_s"):
        return "-"
    return f"{numerator['ops_per_s'] / denominator['ops_per_s']:.2f}"


def ops(record: dict | None) -> str:
    return f"{record['ops_per_s']:,.0f}" if record else "-"


def latency(record: dict | None, field: str) -> str:
    return "-" if not record or record.get(field) is None else f"{record[field]:.2f}"


def tables(records: list[dict]) -> str:
    by = {(r.get("label"), r.get("op"), r.get("concurrency")): r for r in records}
    concurrencies = sorted({r["concurrency"] for r in records if r.get("label") in (LABEL_VAULTD, LABEL_CEILING,
                                                                                  LABEL_ETCD)})
    lines = ["vaultd3 (on the leader) vs etcd3 (on the leader) vs the ceiling, same client, same run:", "",
             "| op | c | vaultd3 ops/s | p50 ms | p99 ms | etcd3 ops/s | vaultd ÷ etcd | ceiling ops/s | "
             "vaultd ÷ ceiling |", "|---|---|---|---|---|---|---|---|---|"]
    for op in ("put", "get"):
        for c in concurrencies:
            vaultd, etcd, ceiling = by.get((LABEL_VAULTD, op, c)), by.get((LABEL_ETCD, op, c)), \
                by.get((LABEL_CEILING, op, c))
            lines.append(f"| {op} | {c} | {ops(vaultd)} | {latency(vaultd, 'p50_ms')} | {latency(vaultd, 'p99_ms')} | "
                         f"{ops(etcd)} | {ratio(vaultd, etcd)} | {ops(ceiling)} | {ratio(vaultd, ceiling)} |")
    lines += ["", "reads spread over all three nodes vs reads on the leader only (etcd: serializable gets on all "
              "members vs linearizable gets on the leader):", "",
              "| c | leader-only ops/s | spread ops/s | spread ÷ leader | per node | etcd3 spread ÷ leader |",
              "|---|---|---|---|---|---|"]
    for c in concurrencies:
        spread = by.get((LABEL_SPREAD, "get", c))
        if spread or by.get((LABEL_ETCD, "get-serializable", c)):
            nodes = " ".join(f"{node}={value:,.0f}" for node, value in (spread or {}).get("nodes", {}).items())
            lines.append(f"| {c} | {ops(by.get((LABEL_VAULTD, 'get', c)))} | {ops(spread)} | "
                         f"{ratio(spread, by.get((LABEL_VAULTD, 'get', c)))} | {nodes or '-'} | "
                         f"{ratio(by.get((LABEL_ETCD, 'get-serializable', c)), by.get((LABEL_ETCD, 'get', c)))} |")
    lines += ["", "writes sent to a standby (forwarded) vs writes sent to the leader:", "",
              "| c | via standby ops/s | p99 ms | on leader ops/s | standby ÷ leader |", "|---|---|---|---|---|"]
    for c in concurrencies:
        forwarded = by.get((LABEL_FORWARDED, "put", c))
        if forwarded:
            lines.append(f"| {c} | {ops(forwarded)} | {latency(forwarded, 'p99_ms')} | "
                         f"{ops(by.get((LABEL_VAULTD, 'put', c)))} | "
                         f"{ratio(forwarded, by.get((LABEL_VAULTD, 'put', c)))} |")
    return "\n".join(lines)


MEASURES = {"ceiling": measure_ceiling, "etcd": measure_etcd, "vaultd": measure_vaultd}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-d", "--seconds", type=float, default=5.0, help="measured seconds per point (default 5)")
    parser.add_argument("-w", "--warmup", type=float, default=1.0, help="unmeasured seconds first (default 1)")
    parser.add_argument("-c", "--concurrency", default="1,8,32,64")
    parser.add_argument("--quick", action="store_true", help="smoke run: -c 1,8, 2 s points, 0.5 s warm-up")
    parser.add_argument("--targets", default="ceiling,etcd,vaultd", help="comma list of ceiling, etcd, vaultd")
    parser.add_argument("--quiet-wait", type=float, default=0.0,
                        help="loadgen waits up to this many s before each point for foreign CPU load to drop")
    parser.add_argument("--out", help="append the JSON lines here")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.warmup, args.concurrency = 2.0, 0.5, "1,8"
    targets = [name for name in args.targets.split(",") if name]
    if unknown := set(targets) - set(MEASURES):
        parser.error(f"unknown targets {sorted(unknown)}; choose from {sorted(MEASURES)}")
    records, skipped, failed = [], [], []
    for name in targets:
        try:
            measured = MEASURES[name](args)
        except Skipped as reason:
            skipped.append(f"{name} skipped: {reason}")
            print(skipped[-1], file=sys.stderr)
            continue
        except Exception as error:  # report it, and still print the other targets' ratios
            traceback.print_exc()
            failed.append(f"{name} failed: {type(error).__name__}: {error}")
            continue
        for record in measured:
            print(json.dumps(record), flush=True)
        records += measured
        if args.out:
            os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
            with open(args.out, "a") as file:
                file.writelines(json.dumps(record) + "\n" for record in measured)
    print()
    print(tables(records))
    for line in skipped + failed:
        print(line)
    errors = sum(record.get("errors", 0) for record in records)
    if errors:
        print(f"{errors} requests failed", file=sys.stderr)
    return 1 if errors or failed or not records else 0


if __name__ == "__main__":
    sys.exit(main())
