#!/usr/bin/env python3
"""Three-node KV v2 benchmark: the vaultd Raft cluster against a 3-node etcd and the aiohttp ceiling, one run.

    cluster_bench.py [--seconds 5] [-c 1,8,32,64] [--quick] [--targets ceiling,etcd,vaultd]
                     [--memory-keys 100000] [--out FILE]

Every target is driven by ../shared/bench/loadgen.py (the one load generator), 100-byte values over 1,000
keys, each point --seconds long after a --warmup, one target at a time (the others are stopped):
1. the ceiling: ../shared/bench/ceiling_server.py serving Vault KV v2 shapes from a dict (no replication);
2. etcd: ../shared/bench/etcd_cluster.sh start 3 (Debian's etcd-server, fsync on); puts and linearizable
   gets sent to the leader, and serializable gets spread over the three members (`--pick all`);
3. vaultd: three real processes from vaultd.devcluster (Shamir seal, KV v2 mounted at secret/, transit at
   transit/ with key `bench`): puts and linearizable gets on the leader, puts sent to a standby (forwarded to
   the leader), gets spread over all three nodes (standbys serve reads locally), and transit encrypt of 1 KiB
   on the leader (transit_bench.py's `vault-transit` loadgen target; etcd has none: its ceiling is the
   ceiling's POST). loadgen's vault target hits one address, so the spread is one loadgen per node started
   together with the workers split between them; their ops/s are summed into one `vaultd3-spread` record
   (its latencies are the worst node's). Spread points need a concurrency >= 3.
   Elections: the Raft term (sys/storage/raft/autopilot/state) and the leader are read before and after
   every vaultd point; each record carries raft_term_before/after, and one `elections` record sums them
   (term A -> B, leader X -> Y). It is reported, never asserted.
   Memory: after the points, --memory-keys distinct keys of 100 bytes (default 100,000; 0 skips it) are
   written on the leader at concurrency 64 (bounded: memory_fill_seconds), a last key is read on every node
   (so all have applied them), then every node's VmRSS and VmHWM (/proc/PID/status) go into a `memory-100k`
   record, with the 400 MB bound reported as met or not met.
With wrk installed (apt-get install wrk), ../shared/bench/wrk_bench.py also drives put,get on the etcd and
vaultd leaders (labels `etcd3-wrk`, `vaultd3-wrk`); without it one line says so.

It prints ratio tables (vaultd ÷ etcd, vaultd ÷ ceiling, spread ÷ leader-only) from the records of this run
only (cluster_report.py), and with --out writes them as markdown next to it (FILE.md) with a PNG of ops/s
against concurrency (FILE.png); `../shared/bench/summarize.py FILE --compare vaultd3:etcd3` works on the
--out file. A missing /usr/bin/etcd skips the etcd rows with the command that installs it. Servers are
started here and stopped by PID; every wait is bounded.
"""

import argparse
import asyncio
import json
import math
import os
import pathlib
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

from cluster_report import (
    LABEL_CEILING,
    LABEL_ETCD,
    LABEL_FORWARDED,
    LABEL_SPREAD,
    LABEL_VAULTD,
    MEMORY_LIMIT_MB,
    WRK_SUFFIX,
    markdown,
    plot,
    report_text,
)
from kv_bench import SHARED, free_port, wait_up

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CEILING_TOKEN = "bench-token"
ETCD_BINARY = os.environ.get("ETCD", "/usr/bin/etcd")
ETCD_INSTALL = "apt-get install -y etcd-server etcd-client"
ETCD_SCRIPT = SHARED / "etcd_cluster.sh"
TRANSIT_BENCH = pathlib.Path(__file__).resolve().parent / "transit_bench.py"  # registers `vault-transit`
WRK = shutil.which("wrk")
MEMORY_PREFIX = "mem/k"
# Bounds on everything that waits: one loadgen run is warm-up + measured time + prefill (<= 120 s in loadgen).
loadgen_overhead_seconds = 180
cluster_ready_seconds = 60
readable_wait_seconds = 20
server_stop_seconds = 15
memory_fill_seconds = 300  # writing the --memory-keys data set
memory_fill_concurrency = 64
memory_applied_seconds = 120  # every node applying it after the last write
request_seconds = 10

assert loadgen_overhead_seconds > 120  # loadgen bounds its own prefill at 120 s


class Skipped(Exception):
    """A target that cannot run on this machine or right now; the message says why and how to fix it."""


def loadgen_command(target: str, ops: str, concurrency: str, label: str, pids: list[int], args, extra=()):
    script = [str(TRANSIT_BENCH), "--loadgen"] if target == "vault-transit" else [str(SHARED / "loadgen.py")]
    return [sys.executable, *script, target, ops, "-c", concurrency, "-d", str(args.seconds),
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
        return records + wrk_points("etcd", LABEL_ETCD, pids, args, [*where, "--pick", "leader"])
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


def wait_readable(cluster, key: str, seconds: float = readable_wait_seconds) -> None:
    """Every node serves `key` (standbys apply the log asynchronously); bounded by `seconds`."""
    deadline = time.monotonic() + seconds
    for node in cluster.node_ids:
        while True:
            response = cluster.request(node, "GET", f"/v1/secret/data/{key}", token=cluster.root_token, timeout=2)
            if response.status == 200:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{node} does not serve secret/{key} after {seconds:g} s: "
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
    """Every vaultd point, one loadgen run each between two readings of the Raft term, then the memory point."""
    pids = [cluster.pid(node) for node in cluster.node_ids]

    def on(node: str) -> list[str]:
        return ["--url", cluster.api_url(node), "--token", cluster.root_token]

    leader = cluster.wait_for_leader(cluster_ready_seconds)
    standby = next(node for node in cluster.node_ids if node != leader)
    enable_transit(cluster, leader)
    first, records = raft_state(cluster), []
    for target, op, label, node in [("vault", "put", LABEL_VAULTD, leader), ("vault", "get", LABEL_VAULTD, leader),
                                    ("vault", "put", LABEL_FORWARDED, standby),
                                    ("vault-transit", "encrypt", LABEL_VAULTD, leader)]:
        for number, concurrency in enumerate(args.concurrency.split(",")):
            prefill = "auto" if number == 0 else "no"  # gets write the 1,000 keys before their first point
            command = loadgen_command(target, op, concurrency, label, pids, args, [*on(node), "--prefill", prefill])
            records += watched(cluster, run_loadgen, command, 1, args)
    wait_readable(cluster, "bench/k000000")
    wait_readable(cluster, "bench/k000999")
    for concurrency in spread_concurrency(args.concurrency).split(","):
        if concurrency:
            records += watched(cluster, spread_reads, cluster, int(concurrency), pids, args)
    if WRK:
        records += watched(cluster, wrk_points, "vault", LABEL_VAULTD, pids, args, on(leader))
    if args.memory_keys:
        records += watched(cluster, memory_point, cluster, args)
    return [*records, elections_record(first, raft_state(cluster), records)]


def enable_transit(cluster, leader: str) -> None:
    """transit/ mounted and its key `bench` created, with the root token."""
    for path, body in [("/v1/sys/mounts/transit", {"type": "transit"}), ("/v1/transit/keys/bench", {})]:
        response = cluster.request(leader, "POST", path, body, token=cluster.root_token)
        if response.status not in (200, 204):
            raise RuntimeError(f"POST {path} on {leader}: HTTP {response.status} {response.body[:200]!r}")


def raft_state(cluster) -> dict:
    """The Raft term (the highest last_term in autopilot's state) and the leader, asked of the active node."""
    leader = cluster.wait_for_leader(cluster_ready_seconds)
    state = cluster.request(leader, "GET", "/v1/sys/storage/raft/autopilot/state", token=cluster.root_token)
    about = cluster.request(leader, "GET", "/v1/sys/leader")
    if state.status != 200 or about.status != 200:
        raise RuntimeError(f"raft state from {leader}: HTTP {state.status} {state.body[:200]!r}, "
                           f"sys/leader HTTP {about.status}")
    body = state.json()
    servers = body.get("data", body)["servers"].values()
    return {"term": max(server["last_term"] for server in servers), "leader": leader,
            "leader_address": about.json().get("leader_address")}


def watched(cluster, measure, *arguments) -> list[dict]:
    """measure(*arguments)'s records, each with the Raft term read just before and just after it."""
    before = raft_state(cluster)
    records = measure(*arguments)
    after = raft_state(cluster)
    for record in records:
        record.update(raft_term_before=before["term"], raft_term_after=after["term"],
                      raft_elections=after["term"] - before["term"], leader_before=before["leader"],
                      leader_after=after["leader"])
    return records


def elections_record(first: dict, last: dict, records: list[dict]) -> dict:
    moved = sorted({f"{r.get('label')} {r.get('op')} c={r.get('concurrency')} (+{r['raft_elections']})"
                    for r in records if r.get("raft_elections")})
    return {"tool": "cluster_bench", "label": LABEL_VAULTD, "op": "elections",
            "elections": last["term"] - first["term"], "term_before": first["term"], "term_after": last["term"],
            "leader_before": first["leader"], "leader_after": last["leader"],
            "leader_address_before": first["leader_address"], "leader_address_after": last["leader_address"],
            "points_with_elections": moved}


def wrk_points(target: str, label: str, pids: list[int], args, where: list[str]) -> list[dict]:
    """put,get on the leader driven by ../shared/bench/wrk_bench.py (whole seconds), labelled LABEL-wrk."""
    if not WRK:
        return []
    records = []
    for op in ("put", "get"):
        command = [sys.executable, str(SHARED / "wrk_bench.py"), target, op, "-c", args.concurrency,
                   "-d", str(math.ceil(args.seconds)), "-w", str(math.ceil(args.warmup)),
                   "--pids", ",".join(map(str, pids)), "--label", label + WRK_SUFFIX,
                   "--quiet-wait", str(args.quiet_wait), *where, *(["--prefill"] if op == "get" else [])]
        records += run_loadgen(command, runs_of(op, args.concurrency), args)
    return records


def memory_point(cluster, args) -> list[dict]:
    """--memory-keys keys written on the leader, applied on every node, then each node's VmRSS and VmHWM."""
    leader = cluster.wait_for_leader(cluster_ready_seconds)
    started = time.monotonic()
    written, errors, samples = asyncio.run(fill(cluster.api_url(leader), cluster.root_token, args.memory_keys))
    seconds = time.monotonic() - started
    response = cluster.request(leader, "POST", f"/v1/secret/data/{MEMORY_PREFIX}last", {"data": {"value": "x"}},
                               token=cluster.root_token)
    if response.status not in (200, 204):
        raise RuntimeError(f"writing the last key on {leader}: HTTP {response.status} {response.body[:200]!r}")
    wait_readable(cluster, f"{MEMORY_PREFIX}last", memory_applied_seconds)  # the log applies in order
    nodes = {node: process_memory(cluster.pid(node)) for node in cluster.node_ids}
    largest = max(node["rss_mb"] for node in nodes.values())
    keys = args.memory_keys
    record = {"tool": "cluster_bench", "label": LABEL_VAULTD, "op": f"memory-{keys // 1000}k" if keys % 1000 == 0
              else f"memory-{keys}", "keys": keys, "keys_written": written, "complete": written == keys,
              "value_size": 100, "fill_concurrency": memory_fill_concurrency, "fill_bound_s": memory_fill_seconds,
              "fill_seconds": round(seconds, 1), "fill_ops_per_s": round(written / seconds, 1), "errors": errors,
              "nodes": nodes, "max_rss_mb": largest, "limit_mb": MEMORY_LIMIT_MB, "met": largest <= MEMORY_LIMIT_MB}
    if samples:
        record["err_sample"] = samples
    if written < keys:
        print(f"memory: only {written:,} of {keys:,} keys were written within {memory_fill_seconds} s "
              f"({errors} errors): the memory figures are for the smaller data set", file=sys.stderr)
    return [record]


async def fill(url: str, token: str, count: int) -> tuple[int, int, list[str]]:
    """Write keys mem/k000000.. once each, memory_fill_concurrency at a time, until done or the time bound."""
    import aiohttp

    value, keys, counts, samples = "v" * 100, iter(range(count)), [0, 0], []
    deadline = time.monotonic() + memory_fill_seconds
    timeout = aiohttp.ClientTimeout(total=request_seconds)
    async with aiohttp.ClientSession(timeout=timeout, headers={"X-Vault-Token": token}) as session:

        async def worker() -> None:
            for key in keys:
                if time.monotonic() > deadline:
                    return
                try:
                    async with session.post(f"{url}/v1/secret/data/{MEMORY_PREFIX}{key:06d}",
                                            json={"data": {"value": value}}) as response:
                        body = await response.read()
                        failure = None if response.status in (200, 204) else f"HTTP {response.status} {body[:120]!r}"
                except (aiohttp.ClientError, TimeoutError) as error:
                    failure = f"{type(error).__name__}: {error}"[:160]
                counts[failure is not None] += 1
                if failure and len(samples) < 3:
                    samples.append(failure)

        await asyncio.gather(*(worker() for _ in range(memory_fill_concurrency)))
    return counts[0], counts[1], samples


def process_memory(pid: int) -> dict:
    """VmRSS and VmHWM of `pid` in MB (10^6 bytes)."""
    fields = {}
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = round(int(value.split()[0]) * 1024 / 1e6, 1)
    return {"rss_mb": fields["VmRSS"], "hwm_mb": fields["VmHWM"]}


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
    parser.add_argument("--memory-keys", type=int, default=100_000,
                        help="keys in the vaultd memory data set (default 100000; 0 skips the memory point)")
    parser.add_argument("--out", help="append the JSON lines here; the report goes to FILE.md and FILE.png")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.warmup, args.concurrency = 2.0, 0.5, "1,8"
    targets = [name for name in args.targets.split(",") if name]
    if unknown := set(targets) - set(MEASURES):
        parser.error(f"unknown targets {sorted(unknown)}; choose from {sorted(MEASURES)}")
    records, skipped, failed = [], [], []
    if not WRK:
        skipped.append("wrk is not installed (apt-get install wrk): no wrk rows")
        print(skipped[-1], file=sys.stderr)
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
    report(records, skipped + failed, args)
    errors = sum(record.get("errors", 0) for record in records)
    if errors:
        print(f"{errors} requests failed", file=sys.stderr)
    return 1 if errors or failed or not records else 0


def report(records: list[dict], notes: list[str], args) -> None:
    """The tables and findings on stdout; with --out, the same as markdown in FILE.md and the plot in FILE.png."""
    print()
    print(report_text(records, notes), end="")
    if not args.out:
        return
    stem = pathlib.Path(args.out).with_suffix("")
    image, text = stem.with_suffix(".png"), stem.with_suffix(".md")
    drawn = plot(records, image)
    text.write_text(markdown(records, notes, shlex.join(["bench/cluster_bench.py", *sys.argv[1:]]),
                             image.name if drawn else None))
    print(f"report: {text}" + (f", plot: {image}" if drawn else " (nothing to plot)"))

if __name__ == "__main__":
    sys.exit(main())
