#!/usr/bin/env python3
"""One-node KV v2 benchmark: vaultd against the aiohttp ceiling and the disk, measured in the same run.

    kv_bench.py [-d SECONDS] [-c 1,8,32,64] [--out FILE]

1. the raw fsync rate of the disk (../shared/bench/fsync_bench.py);
2. the ceiling: ../shared/bench/ceiling_server.py serving the same Vault KV v2 shapes from a dict;
3. vaultd: `vaultd server --dev` (LogStore, sync="batch": every acknowledged write is fsynced);
each driven by ../shared/bench/loadgen.py (the one load generator for every target), `vault put,get`,
100-byte values over 1,000 keys. It prints a table of ratios: vaultd ÷ ceiling per op and concurrency, and
vaultd writes ÷ raw fsyncs. Servers are started here and stopped by PID; every run is bounded in time.
"""

import argparse
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "bench"
TOKEN = "bench-token"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_up(url: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError as error:
            if getattr(error, "code", None):  # an HTTP status: the server answers
                return
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def run_json_lines(command: list[str]) -> list[dict]:
    output = subprocess.run(command, check=True, capture_output=True, text=True, timeout=1800).stdout
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def loadgen(url: str, pid: int, label: str, args) -> list[dict]:
    return run_json_lines([
        sys.executable, str(SHARED / "loadgen.py"), "vault", "put,get", "--url", url, "--token", TOKEN,
        "-c", args.concurrency, "-d", str(args.duration), "-w", "1", "--pids", str(pid), "--label", label,
    ])


def with_server(command: list[str], url: str, health: str, args, label: str, env=None) -> list[dict]:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        wait_up(url + health)
        return loadgen(url, process.pid, label, args)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def measure(args) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="kv-bench-") as scratch:
        records = run_json_lines([sys.executable, str(SHARED / "fsync_bench.py"), "--dir", scratch, "-d", "3",
                                  "--modes", "fsync,fdatasync"])
    port = free_port()
    records += with_server(
        [sys.executable, str(SHARED / "ceiling_server.py"), "--port", str(port), "--token", TOKEN,
         "--max-seconds", "900"], f"http://127.0.0.1:{port}", "/get", args, "ceiling-vaultshape")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    records += with_server(
        [sys.executable, "-m", "vaultd", "server", "--dev", "--dev-root-token-id", TOKEN,
         "--dev-listen-address", f"127.0.0.1:{port}"], f"http://127.0.0.1:{port}", "/v1/sys/health", args,
        "vaultd", env)
    return records


def table(records: list[dict]) -> str:
    raw_fsync = max(r["ops_per_s"] for r in records if r.get("tool") == "fsync_bench")
    by = {(r.get("label"), r["op"], r["concurrency"]): r for r in records if r.get("label")}
    lines = [f"raw fsync/fdatasync (best of the two, same run): {raw_fsync:,.0f}/s", "",
             "| op | c | vaultd ops/s | p50 ms | p99 ms | ceiling ops/s | vaultd ÷ ceiling | vaultd ÷ raw fsync |",
             "|---|---|---|---|---|---|---|---|"]
    for (label, op, concurrency), record in sorted(by.items(), key=lambda item: (item[0][1], item[0][2])):
        if label != "vaultd":
            continue
        ceiling = by.get(("ceiling-vaultshape", op, concurrency), {}).get("ops_per_s") or float("nan")
        ops = record["ops_per_s"]
        lines.append(f"| {op} | {concurrency} | {ops:,.0f} | {record['p50_ms']} | {record['p99_ms']} | "
                     f"{ceiling:,.0f} | {ops / ceiling:.2f} | {ops / raw_fsync:.2f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-d", "--duration", type=float, default=5.0)
    parser.add_argument("-c", "--concurrency", default="1,8,32,64")
    parser.add_argument("--out", help="append the JSON lines here")
    args = parser.parse_args()
    records = measure(args)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "a") as file:
            file.writelines(json.dumps(record) + "\n" for record in records)
    print(table(records))
    errors = sum(r.get("errors", 0) for r in records)
    if errors:
        print(f"{errors} requests failed", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
