#!/usr/bin/env python3
"""Where a 3-node vaultd cluster spends its CPU under load: py-spy on every node while loadgen drives one op.

    profile_cluster.py [--op put|get] [-c 1] [-d 10] [--top 30] [--out DIR]

Starts a 3-node cluster (vaultd.devcluster, Shamir seal, KV v2 at secret/), runs ../shared/bench/loadgen.py
against the leader, and samples each node with `py-spy record --format raw` (pip install py-spy; it needs
ptrace, which root has) for the measured window. Writes one collapsed-stack file per node into --out (open
with speedscope, or `flamegraph.pl`), and prints, per node, the functions with the most samples on the stack
("inclusive") and at the top of the stack ("self"), idle waits (select, epoll, sleep, lock waits) left out.
"""

import argparse
import collections
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile

from cluster_bench import loadgen_command, ready_cluster, run_loadgen

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

idle_frames = ("select (", "poll (", "epoll", "wait (threading", "sleep (", "_run_once (asyncio",
               "run_forever", "acquire (", "time.sleep", "do_poll")


def collapsed(path: pathlib.Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def busy(frames: list[str]) -> bool:
    return not any(marker in frames[-1] for marker in idle_frames)


def summary(stacks, top: int) -> str:
    inclusive, self_time, total = collections.Counter(), collections.Counter(), 0
    for frames, count in stacks:
        if not busy(frames):
            continue
        total += count
        self_time[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"busy samples: {total}", "", "inclusive:"]
    lines += [f"  {100 * n / max(total, 1):5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    lines += ["", "self:"]
    lines += [f"  {100 * n / max(total, 1):5.1f}%  {frame}" for frame, n in self_time.most_common(top)]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--op", default="put", choices=("put", "get"))
    parser.add_argument("-c", "--concurrency", default="1")
    parser.add_argument("-d", "--seconds", type=float, default=10.0)
    parser.add_argument("-w", "--warmup", type=float, default=1.0)
    parser.add_argument("--quiet-wait", type=float, default=0.0)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--gil", action="store_true", help="sample only the thread holding the GIL (Python CPU)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "profile"))
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(pathlib.Path(sys.executable).parent / "py-spy")
    if not pathlib.Path(spy).exists():
        print("py-spy is missing: pip install py-spy", file=sys.stderr)
        return 2
    from vaultd import devcluster
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="profile-") as scratch, \
            ready_cluster(devcluster, pathlib.Path(scratch)) as cluster:
        leader = cluster.wait_for_leader(30)
        pids = {node: cluster.pid(node) for node in cluster.node_ids}
        files = {node: out / f"{args.op}-c{args.concurrency}{'-gil' if args.gil else ''}-{node}"
                             f"{'-leader' if node == leader else ''}.txt"
                 for node in cluster.node_ids}
        gil = ["--gil"] if args.gil else []
        spies = [subprocess.Popen([spy, "record", "--format", "raw", "--threads", "--nonblocking", "--rate", "200",
                                   *gil, "--duration", str(int(args.seconds + args.warmup + 2)), "--pid", str(pid),
                                   "--output", str(files[node])], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for node, pid in pids.items()]
        command = loadgen_command("vault", args.op, args.concurrency, "vaultd3-profiled", list(pids.values()), args,
                                  ["--url", cluster.api_url(leader), "--token", cluster.root_token])
        records = run_loadgen(command, 1, args)
        for spy_process in spies:
            spy_process.wait(timeout=args.seconds + args.warmup + 60)
    for record in records:
        print(json.dumps({key: record.get(key) for key in ("op", "concurrency", "ops_per_s", "p50_ms", "p99_ms",
                                                            "server_cpu_cores", "server_cpu_per_pid")}))
    for path in files.values():
        if path.exists():
            print(f"\n=== {path.name}\n{summary(collapsed(path), args.top)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
