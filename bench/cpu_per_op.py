#!/usr/bin/env python3
"""CPU per operation, per thread, of every node of a 3-node vaultd cluster under one loadgen point.

    cpu_per_op.py [--op put|get] [-c 64] [-d 4]

Starts a cluster (vaultd.devcluster, Shamir seal, KV v2 at secret/), warms it up, then reads every thread's
user and system CPU time from /proc/PID/task/TID/stat before and after a ../shared/bench/loadgen.py run against
the leader, and prints milliseconds of CPU per completed operation for each node's main thread (the event loop)
and each other thread (the raft tick thread is the busy one). It says where the cost of one request goes,
which ops/s alone cannot.
"""

import argparse
import os
import pathlib
import sys
import tempfile

from cluster_bench import loadgen_command, ready_cluster, run_loadgen

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ticks_per_second = os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[str, float]:
    """Seconds of user+system CPU per thread of `pid`: 'main' (the event loop) and 'thread <tid>' for others."""
    seconds = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        name = "main" if int(tid) == pid else f"thread {tid}"
        seconds[name] = (int(fields[11]) + int(fields[12])) / ticks_per_second
    return seconds


def loadgen(cluster, leader: str, args, seconds: float, warmup: float) -> dict:
    """One point through cluster_bench's loadgen helpers (their time budget and error handling)."""
    point = argparse.Namespace(seconds=seconds, warmup=warmup, quiet_wait=0.0)
    pids = [cluster.pid(node) for node in cluster.node_ids]
    command = loadgen_command("vault", args.op, str(args.concurrency), "vaultd3-cpu", pids, point,
                              ["--url", cluster.api_url(leader), "--token", cluster.root_token])
    records = run_loadgen(command, 1, point)
    if not records:
        raise RuntimeError("loadgen printed no record")
    return records[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--op", default="put", choices=("put", "get"))
    parser.add_argument("-c", "--concurrency", type=int, default=64)
    parser.add_argument("-d", "--seconds", type=float, default=4.0)
    args = parser.parse_args()
    from vaultd import devcluster

    with tempfile.TemporaryDirectory(prefix="cpu-per-op-") as scratch, \
            ready_cluster(devcluster, pathlib.Path(scratch)) as cluster:
        leader = cluster.wait_for_leader(30)
        pids = {node: cluster.pid(node) for node in cluster.node_ids}
        loadgen(cluster, leader, args, 1.0, 0.5)  # prefill and warm-up, not measured
        before = {node: thread_cpu(pid) for node, pid in pids.items()}
        record = loadgen(cluster, leader, args, args.seconds, 0.0)
        after = {node: thread_cpu(pid) for node, pid in pids.items()}
    print(f"{args.op} c={args.concurrency}: {record['ops_per_s']:,.0f} ops/s, p50 {record['p50_ms']:.2f} ms, "
          f"{record['ops']} ops measured (the CPU window includes loadgen's start and stop)")
    for node in pids:
        used = {thread: (after[node][thread] - before[node].get(thread, 0.0)) * 1000 / max(record["ops"], 1)
                for thread in after[node]}
        shown = ", ".join(f"{thread} {ms:.2f}" for thread, ms in sorted(used.items()) if ms >= 0.005)
        print(f"  {node}{' (leader)' if node == leader else ''}: ms of CPU per op: {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
