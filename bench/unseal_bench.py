#!/usr/bin/env python3
"""Restart time of vaultd with the PKCS#11 seal (SoftHSM2) against Shamir with the shares submitted, one run.

    unseal_bench.py [--keys 1000,100000] [--trials 3] [--nodes 1] [--concurrency 64] [--out FILE]

One cluster per seal (shamir, pkcs11) from vaultd.devcluster, `--nodes` nodes (default one), initialised with
5 shares, threshold 3 (unseal keys for Shamir, recovery keys for PKCS#11), KV v2 mounted at secret/. For each
key count, ascending, each cluster in turn is topped up to that many keys (secret/bench/k<i>, 100-byte values,
aiohttp puts with at most `--concurrency` in flight; raft/backend.py group-commits concurrent puts, several to
a raft entry) and stopped with SIGTERM. Then `--trials` restarts of each, the seals interleaved with only the
measured cluster running, are timed from the spawn of its processes to the first moment that:
  answering  /v1/sys/seal-status gives any HTTP answer; Shamir's shares are submitted at that answer;
  unsealed   seal-status, or for Shamir the answer to the last share, says "sealed": false;
  active     /v1/sys/health answers 200 (unsealed and active);
  serving    a KV read of a known key answers 200 with the value written: the figure of issue 6.
Each node is polled every `poll_interval_seconds` (plus the probes' own time): that is the resolution.

Every fill, trial and a summary per (seal, keys) (median and max of each stage) are JSON lines on stdout (and
appended to --out); the table at the end gives pkcs11 ÷ shamir, both measured in this run, and the machine's
load average, as the spawn (Python start-up) is CPU-bound. Fill progress goes to stderr. Processes are started
here and stopped by PID (DevCluster); every wait is bounded.
"""

import argparse
import asyncio
import contextlib
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

import aiohttp

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vaultd import devcluster  # noqa: E402  (after the repo root is on the path)

seals = ("shamir", "pkcs11")
stages = ("answering", "unsealed", "active", "serving")
init_shares, init_threshold = 5, 3
value_bytes = 100
key_prefix = "bench/k"
known_key_index = 0  # read back after every restart
cluster_ready_seconds = 60.0
put_timeout_seconds = 30.0
put_attempts_max = 3  # a put answered 5xx/429 or not at all is retried this often, then the fill fails
put_retry_pause_seconds = 0.2
fill_seconds_max = 1800.0  # one top-up; the run fails rather than wait longer
progress_interval_seconds = 5.0
restart_seconds_max = 300.0  # spawn to serving; longer counts as a failure, reported with the log's end
probe_timeout_seconds = 2.0
poll_interval_seconds = 0.01
assert poll_interval_seconds < probe_timeout_seconds < restart_seconds_max
assert put_retry_pause_seconds * put_attempts_max < put_timeout_seconds < fill_seconds_max
assert 1 <= init_threshold <= init_shares


class BenchError(RuntimeError):
    """The server refused or did not answer in time; the message says which request and what came back."""


def value_of(index: int) -> str:
    return f"value-{index:09d}-".ljust(value_bytes, "x")


def emit(record: dict, out: str | None) -> None:
    record = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S"), "tool": "unseal_bench", **record}
    print(json.dumps(record), flush=True)
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "a") as file:
            file.write(json.dumps(record) + "\n")


def progress(message: str) -> None:
    print(f"[unseal_bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- filling ---------------------------------------------------------------------------------------------------------


async def put_key(session: aiohttp.ClientSession, url: str, index: int, stats: dict) -> None:
    body = {"data": {"value": value_of(index)}}
    last = ""
    for attempt in range(put_attempts_max):
        if attempt:
            stats["retries"] += 1
            await asyncio.sleep(put_retry_pause_seconds)
        try:
            async with session.post(f"{url}/v1/secret/data/{key_prefix}{index}", json=body) as response:
                answer = await response.read()
                if 200 <= response.status < 300:
                    return
                last = f"HTTP {response.status} {answer[:200]!r}"
                if response.status < 500 and response.status != 429:
                    break  # a refusal: retrying will not help
        except (aiohttp.ClientError, TimeoutError) as error:
            last = f"{type(error).__name__}: {error}"
    raise BenchError(f"PUT secret/data/{key_prefix}{index} failed after {attempt + 1} attempt(s): {last}")


async def fill_async(url: str, token: str, first: int, stop: int, concurrency: int) -> dict:
    """Write keys first..stop-1 with at most `concurrency` puts in flight; bounded by fill_seconds_max. The first
    put that fails for good stops every worker and is raised."""
    stats = {"done": 0, "retries": 0}
    failures: list[BenchError] = []
    pending = iter(range(first, stop))
    finished = asyncio.Event()

    async def worker(session):
        for index in pending:  # one shared iterator: each index is taken by exactly one worker
            if failures:
                return
            try:
                await put_key(session, url, index, stats)
            except BenchError as error:
                failures.append(error)
                return
            stats["done"] += 1

    async def reporter(started):
        while not finished.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finished.wait(), progress_interval_seconds)
            elapsed = time.monotonic() - started
            progress(f"filled {first + stats['done']:,}/{stop:,} keys, {stats['done'] / elapsed:,.0f} puts/s, "
                     f"{stats['retries']} retries")

    timeout = aiohttp.ClientTimeout(total=put_timeout_seconds)
    connector = aiohttp.TCPConnector(limit=concurrency)
    started = time.monotonic()
    async with aiohttp.ClientSession(headers={"X-Vault-Token": token}, timeout=timeout,
                                     connector=connector) as session:
        try:
            async with asyncio.timeout(fill_seconds_max), asyncio.TaskGroup() as group:
                group.create_task(reporter(started))
                try:
                    async with asyncio.TaskGroup() as workers:
                        for _ in range(concurrency):
                            workers.create_task(worker(session))
                finally:
                    finished.set()
        except TimeoutError:
            raise BenchError(f"filling stopped after {fill_seconds_max:g}s at {first + stats['done']:,}/{stop:,} "
                             "keys") from None
    if failures:
        raise failures[0]
    seconds = time.monotonic() - started
    return {"keys_added": stop - first, "fill_s": round(seconds, 2),
            "puts_per_s": round((stop - first) / seconds, 1), "retries": stats["retries"]}


def fill(cluster, node: str, first: int, stop: int, concurrency: int) -> dict:
    return asyncio.run(fill_async(cluster.api_url(node), cluster.root_token, first, stop, concurrency))


# --- one restart -----------------------------------------------------------------------------------------------------


def probe(cluster, node: str, method: str, path: str, body=None, token=None):
    """The node's answer, or None when it gives none (not listening yet)."""
    try:
        return cluster.request(node, method, path, body, token=token, timeout=probe_timeout_seconds)
    except ConnectionError:
        return None


def submit_shares(cluster, node: str) -> bool:
    """Submit unseal shares until the node says unsealed; False while it does not (not ready to take them yet:
    the next poll submits them again, and a share given twice counts once)."""
    for key in cluster.keys[:init_threshold]:
        response = probe(cluster, node, "PUT", "/v1/sys/unseal", {"key": key})
        if response is None or response.status != 200:
            return False
        if response.json().get("sealed") is False:
            return True
    return False


def stored_value(response) -> str | None:
    data = (response.json().get("data") or {}).get("data") or {}
    return data.get("value")


def advance(cluster, node: str, stage: str | None, expected: str, mark) -> str | None:
    """One poll of `node` at `stage` (None: nothing answered yet); `mark(stage)` at the answer that shows a stage
    reached. Returns the node's stage."""
    if stage in (None, "answering"):
        status = probe(cluster, node, "GET", "/v1/sys/seal-status")
        if status is None:
            return stage
        mark("answering")
        if status.status == 200 and status.json().get("sealed") is False:
            mark("unsealed")
            return "unsealed"
        if cluster.seal_type == "shamir" and status.status == 200 and submit_shares(cluster, node):
            mark("unsealed")
            return "unsealed"
        return "answering"
    if stage == "unsealed":
        if cluster.health_status(node) != 200:
            return stage
        mark("active")
        return "active"
    if stage == "active":
        read = probe(cluster, node, "GET", f"/v1/secret/data/{key_prefix}{known_key_index}", token=cluster.root_token)
        if read is not None and read.status == 200 and stored_value(read) == expected:
            mark("serving")
            return "serving"
        return "unsealed" if cluster.health_status(node) != 200 else stage  # lost leadership: wait again
    raise AssertionError(stage)


def timed_restart(cluster) -> dict[str, float]:
    """Spawn every node, then poll each one through the stages; return the seconds from the spawn at which
    the first node reached each stage. Done when one node serves the known key."""
    expected = value_of(known_key_index)
    reached: dict[str, float] = {}
    stage_of: dict[str, str | None] = dict.fromkeys(cluster.node_ids)
    started = time.monotonic()

    def mark(stage: str) -> None:
        reached.setdefault(stage, time.monotonic() - started)

    for node in cluster.node_ids:
        cluster.start(node, wait=False)
    deadline = started + restart_seconds_max
    while "serving" not in reached:
        for node in cluster.node_ids:
            if not cluster.running(node):
                raise BenchError(f"{node} exited with status {cluster.exit_status(node)} during the restart; the "
                                 f"end of {cluster.log_path(node)}:\n{cluster.log_tail(node)}")
            stage_of[node] = advance(cluster, node, stage_of[node], expected, mark)
        if time.monotonic() > deadline:
            ends = "\n".join(f"--- {node}:\n{cluster.log_tail(node)}" for node in cluster.node_ids)
            raise BenchError(f"not serving {restart_seconds_max:g}s after the spawn; stages reached: {stage_of}\n"
                             f"{ends}")
        time.sleep(poll_interval_seconds)
    return {stage: round(reached[stage], 3) for stage in stages}


def stop_all(cluster) -> dict:
    """SIGTERM every node; how long they took and whether any needed SIGKILL."""
    started = time.monotonic()
    cluster.stop()
    statuses = {node: cluster.exit_status(node) for node in cluster.node_ids}
    return {"stop_s": round(time.monotonic() - started, 3), "exit_status": statuses,
            "killed": any(status == -9 for status in statuses.values())}


# --- the clusters ----------------------------------------------------------------------------------------------------


def ready_cluster(directory: pathlib.Path, seal: str, nodes: int):
    config = devcluster.write_config(directory, nodes=nodes, seal=seal)
    cluster = devcluster.DevCluster(config, log_dir=directory / "logs")
    try:
        cluster.start()
        cluster.initialize(shares=init_shares, threshold=init_threshold)
        cluster.unseal(timeout=cluster_ready_seconds)
        leader = cluster.wait_for_leader(cluster_ready_seconds)
        cluster.wait_healthy(cluster_ready_seconds)
        response = cluster.request(leader, "POST", "/v1/sys/mounts/secret",
                                   {"type": "kv", "options": {"version": "2"}}, token=cluster.root_token)
        if response.status not in (200, 204):
            raise BenchError(f"mounting secret/ on {leader}: HTTP {response.status} {response.body[:200]!r}")
    except BaseException:
        cluster.close()
        raise
    return cluster


def directory_bytes(path: pathlib.Path) -> int:
    return sum(entry.stat().st_size for entry in path.rglob("*") if entry.is_file())


def disk_state(cluster) -> dict:
    """What a start has to read, summed over the nodes: the raft journal (entries since the last snapshot), the
    snapshot, and the store. Where the last snapshot fell differs between two clusters filled alike."""
    state = {"journal_bytes": 0, "snapshot_bytes": 0, "store_bytes": 0}
    for node in cluster.document.get("node") or []:
        data = cluster.directory / node["data_dir"]
        raft = data / "raft"
        for name, key in (("journal", "journal_bytes"), ("journal.snapshot", "snapshot_bytes")):
            with contextlib.suppress(FileNotFoundError):
                state[key] += (raft / name).stat().st_size
        state["store_bytes"] += directory_bytes(data / "store")
    return state


def bring_back(cluster) -> str:
    """Start a stopped cluster again, untimed: for filling. Returns the active node."""
    cluster.start()
    cluster.unseal(timeout=cluster_ready_seconds)
    return cluster.wait_for_leader(cluster_ready_seconds)


def top_up(clusters: dict, directories: dict, stored: int, keys: int, args) -> list[dict]:
    """Fill every seal's cluster from `stored` to `keys` keys, one cluster running at a time; leave them stopped."""
    records = []
    for seal, cluster in clusters.items():
        leader = bring_back(cluster)
        progress(f"{seal}: filling keys {stored:,}..{keys - 1:,} through {leader}")
        filled = fill(cluster, leader, stored, keys, args.concurrency)
        stopped = stop_all(cluster)
        records.append({"seal": seal, "keys": keys, "nodes": args.nodes, "fill": True,
                        "concurrency": args.concurrency, **filled,
                        "data_bytes": directory_bytes(directories[seal] / "data"),
                        "stop_after_fill_s": stopped["stop_s"], "loadavg_1m": round(os.getloadavg()[0], 2)})
        emit(records[-1], args.out)
    return records


def run_trials(clusters: dict, keys: int, args) -> list[dict]:
    """`args.trials` timed restarts of each cluster, the seals interleaved (their order swapped every trial, so
    that neither always follows the other) and only the measured cluster running."""
    trials: dict[str, list[dict]] = {seal: [] for seal in clusters}
    for number in range(1, args.trials + 1):
        order = list(clusters) if number % 2 else list(reversed(clusters))
        for seal in order:
            on_disk = disk_state(clusters[seal])
            times = timed_restart(clusters[seal])
            stopped = stop_all(clusters[seal])
            trials[seal].append({"seal": seal, "keys": keys, "nodes": args.nodes, "trial": number,
                                 **{f"{stage}_s": times[stage] for stage in stages}, **stopped, **on_disk,
                                 "loadavg_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()})
            emit(trials[seal][-1], args.out)
            progress(f"{seal} {keys:,} keys trial {number}: serving after {times['serving']:.3f}s")
    records = []
    for seal, done in trials.items():
        records += done
        records.append(summary({"seal": seal, "keys": keys, "nodes": args.nodes}, done))
        emit(records[-1], args.out)
    return records


def measure(chosen: list[str], args) -> list[dict]:
    records, stored = [], 0
    with contextlib.ExitStack() as stack:
        clusters, directories = {}, {}
        for seal in chosen:
            directories[seal] = pathlib.Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix=f"unseal-bench-{seal}-")))
            clusters[seal] = stack.enter_context(ready_cluster(directories[seal], seal, args.nodes))
            progress(f"{seal}: {args.nodes}-node cluster up in {directories[seal]}")
            stop_all(clusters[seal])
        for keys in args.keys:
            records += top_up(clusters, directories, stored, keys, args)
            stored = keys
            records += run_trials(clusters, keys, args)
    return records


def summary(base: dict, trials: list[dict]) -> dict:
    record = {**base, "summary": True, "trials": len(trials)}
    for stage in stages:
        values = [trial[f"{stage}_s"] for trial in trials]
        record[f"{stage}_median_s"] = round(statistics.median(values), 3)
        record[f"{stage}_max_s"] = max(values)
    return record


# --- report ----------------------------------------------------------------------------------------------------------


def table(records: list[dict], key_counts: list[int]) -> str:
    summaries = {(r["seal"], r["keys"]): r for r in records if r.get("summary")}
    fills = {(r["seal"], r["keys"]): r for r in records if r.get("fill")}
    lines = ["| keys | stage | shamir median s | shamir max s | pkcs11 median s | pkcs11 max s | "
             "pkcs11 ÷ shamir (median) | pkcs11 ÷ shamir (max) |", "|---|---|---|---|---|---|---|---|"]
    for keys in key_counts:
        shamir, pkcs11 = summaries.get(("shamir", keys)), summaries.get(("pkcs11", keys))
        for stage in stages:
            cells = [f"{keys:,}", stage]
            for record in (shamir, pkcs11):
                cells += [f"{record[f'{stage}_{field}_s']:.3f}" if record else "-" for field in ("median", "max")]
            for field in ("median", "max"):
                ok = shamir and pkcs11 and shamir[f"{stage}_{field}_s"] > 0
                cells.append(f"{pkcs11[f'{stage}_{field}_s'] / shamir[f'{stage}_{field}_s']:.2f}" if ok else "-")
            lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for (seal, keys), record in sorted(fills.items(), key=lambda item: (item[0][1], item[0][0])):
        lines.append(f"fill {seal} to {keys:,} keys: {record['keys_added']:,} puts in {record['fill_s']:.1f}s = "
                     f"{record['puts_per_s']:,.0f} puts/s at concurrency {record['concurrency']}, "
                     f"{record['retries']} retries; data dir {record['data_bytes'] / 1e6:,.1f} MB")
    for record in records:
        if record.get("trial") == 1 and "journal_bytes" in record:
            lines.append(f"on disk before the {record['seal']} restarts at {record['keys']:,} keys: raft journal "
                         f"{record['journal_bytes'] / 1e6:,.1f} MB (read at every start), snapshot "
                         f"{record['snapshot_bytes'] / 1e6:,.1f} MB, store {record['store_bytes'] / 1e6:,.1f} MB")
    loads = [r["loadavg_1m"] for r in records if "trial" in r and "loadavg_1m" in r]
    if loads:
        lines.append(f"1-minute load average after each trial: {min(loads):.2f} to {max(loads):.2f} on "
                     f"{os.cpu_count()} CPUs (a loaded machine slows the spawn and the replay alike)")
    return "\n".join(lines)


def parse_keys(text: str) -> list[int]:
    counts = sorted({int(part) for part in text.split(",") if part.strip()})
    if not counts or counts[0] <= known_key_index:
        raise argparse.ArgumentTypeError(f"want positive key counts, not {text!r}")
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=parse_keys, default=parse_keys("1000,100000"),
                        help="comma list of stored key counts (default 1000,100000)")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=64, help="puts in flight while filling (default 64)")
    parser.add_argument("--seals", default=",".join(seals), help="comma list of shamir, pkcs11")
    parser.add_argument("--out", help="append the JSON lines here")
    args = parser.parse_args()
    chosen = [name for name in args.seals.split(",") if name]
    if unknown := set(chosen) - set(seals):
        parser.error(f"unknown seals {sorted(unknown)}; choose from {list(seals)}")
    if args.trials < 1 or args.nodes < 1 or args.concurrency < 1:
        parser.error("--trials, --nodes and --concurrency must be positive")
    records = measure(chosen, args)
    print()
    print(table(records, args.keys))
    return 0


if __name__ == "__main__":
    sys.exit(main())
