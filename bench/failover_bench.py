#!/usr/bin/env python3
"""Failover time of the 3-node vaultd cluster, measured the same way on a 3-node etcd in the same run.

    failover_bench.py [--trials 10] [--request-timeout 0.25] [--targets etcd,vaultd] [--out FILE]

A writer keeps writing (vaultd: KV v2 put of secret/failover/k<n>; etcd: v3 put through its JSON gateway),
one node after the other, each request on a fresh connection with a --request-timeout per socket operation,
so a dead node costs one refused connect and a stuck one at most the timeout. One trial: write for
--steady-seconds, SIGKILL the leader, and go on writing until a write *sent after the kill* is acknowledged:
the failover time is that acknowledgement minus the moment of the kill. Then the killed node comes back
(vaultd: start, unseal, wait healthy; etcd: its own command line again, wait for /health) before the next
trial kills whichever node leads then.

Each trial and a summary per target (median, max) are JSON lines on stdout (and appended to --out); the
table at the end gives vaultd's median and max as ratios of etcd's, measured by the same writer in this run.
The issue's aim is a vaultd median <= 1.5 s. A missing /usr/bin/etcd skips the etcd baseline and says how
to install it. Everything started here is stopped by PID; every wait is bounded.
"""

import argparse
import base64
import dataclasses
import http.client
import json
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse

from cluster_bench import Skipped, etcd_script, ready_cluster, start_etcd

failover_goal_median_seconds = 1.5
failover_wait_seconds_max = 30.0  # a trial whose writes are not acknowledged by then counts as timed out
recover_seconds_max = 60.0
retry_pause_seconds = 0.01  # after a failed write, so that an instant refusal does not spin a core
value_bytes = 100
failover_keys = 100
error_samples_max = 5
assert retry_pause_seconds < failover_goal_median_seconds < failover_wait_seconds_max


@dataclasses.dataclass(frozen=True)
class Attempt:
    node: str
    started: float  # time.monotonic()
    ended: float
    error: str | None  # None: acknowledged


def post(url: str, body: bytes, headers: dict, timeout: float) -> str | None:
    """POST on a fresh connection; None when acknowledged (2xx), else what went wrong."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request("POST", parts.path, body, {"Content-Type": "application/json", **headers})
        response = connection.getresponse()
        answer = response.read()
        return None if 200 <= response.status < 300 else f"HTTP {response.status} {answer[:120]!r}"
    except (OSError, http.client.HTTPException) as error:
        return f"{type(error).__name__}: {error}"[:160]
    finally:
        connection.close()


class Writer:
    """Writes one node after the other (round robin), each write bounded by the request timeout."""

    def __init__(self, target, timeout: float):
        self.target, self.timeout = target, timeout
        self.order = list(target.urls)
        self.turn = 0
        self.count = 0

    def attempt(self) -> Attempt:
        node = self.order[self.turn % len(self.order)]
        self.turn += 1
        self.count += 1
        url, body, headers = self.target.write(node, self.count % failover_keys)
        started = time.monotonic()
        error = post(url, body, headers, self.timeout)
        ended = time.monotonic()
        if error is not None:
            time.sleep(retry_pause_seconds)
        return Attempt(node, started, ended, error)

    def run_for(self, seconds: float) -> list[Attempt]:
        deadline = time.monotonic() + seconds
        attempts = []
        while time.monotonic() < deadline:
            attempts.append(self.attempt())
        return attempts

    def wait_acknowledged(self, since: float, seconds: float) -> tuple[Attempt | None, list[Attempt]]:
        """Write until a write sent at or after `since` is acknowledged, for at most `seconds`."""
        deadline = time.monotonic() + seconds
        failed = []
        while time.monotonic() < deadline:
            attempt = self.attempt()
            if attempt.error is None and attempt.started >= since:
                return attempt, failed
            if attempt.error is not None:
                failed.append(attempt)
        return None, failed


def trial(target, writer: Writer, number: int, args) -> dict:
    leader = target.leader()
    steady = writer.run_for(args.steady_seconds)
    acknowledged = [attempt for attempt in steady if attempt.error is None]
    if not acknowledged:
        raise RuntimeError(f"{target.label}: no write acknowledged before the kill: {steady[-1].error}")
    killed_at = time.monotonic()
    target.kill(leader)
    first, failed = writer.wait_acknowledged(killed_at, failover_wait_seconds_max)
    record = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S"), "tool": "failover_bench", "target": target.kind,
        "label": target.label, "trial": number, "killed": leader,
        "failover_s": round(first.ended - killed_at, 3) if first else None, "timed_out": first is None,
        "first_ack_node": first.node if first else None, "failed_writes": len(failed),
        "error_sample": sorted({attempt.error for attempt in failed})[:error_samples_max],
        "steady_writes_per_s": round(len(acknowledged) / args.steady_seconds, 1),
        "request_timeout_s": args.request_timeout,
    }
    record["new_leader"] = target.leader() if first else None
    recover_started = time.monotonic()
    target.recover(leader)
    record["recover_s"] = round(time.monotonic() - recover_started, 3)
    return record


def summary(records: list[dict], target) -> dict:
    times = [record["failover_s"] for record in records if record["failover_s"] is not None]
    return {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S"), "tool": "failover_bench", "target": target.kind,
        "label": target.label, "summary": True, "trials": len(records),
        "timed_out": sum(record["timed_out"] for record in records),
        "median_s": round(statistics.median(times), 3) if times else None,
        "max_s": max(times) if times else None, "min_s": min(times) if times else None,
        "goal_median_s": failover_goal_median_seconds if target.kind == "vault" else None,
    }


class VaultdTarget:
    kind, label = "vault", "vaultd3"

    def __init__(self, cluster):
        self.cluster = cluster
        self.urls = {node: cluster.api_url(node) for node in cluster.node_ids}
        self.headers = {"X-Vault-Token": cluster.root_token}

    def write(self, node: str, key: int) -> tuple[str, bytes, dict]:
        body = json.dumps({"data": {"value": "v" * value_bytes}}).encode()
        return f"{self.urls[node]}/v1/secret/data/failover/k{key}", body, self.headers

    def leader(self) -> str:
        return self.cluster.wait_for_leader(failover_wait_seconds_max)

    def kill(self, node: str) -> None:
        self.cluster.kill(node, signal.SIGKILL)

    def recover(self, node: str) -> None:
        self.cluster.start(node)
        self.cluster.unseal(node)
        self.cluster.wait_healthy(recover_seconds_max)


class EtcdTarget:
    """The shared 3-node etcd (etcd_cluster.sh): members n1..n3 in the order of its endpoints and pids file. A
    killed member is started again here with its own command line, and the pids file is kept pointing at the
    live processes so that `etcd_cluster.sh stop 3` stops exactly them."""

    kind, label = "etcd", "etcd3"

    def __init__(self, endpoints: str, pids: list[int]):
        self.urls = {f"n{index + 1}": url for index, url in enumerate(endpoints.split(","))}
        self.pids = dict(zip(self.urls, pids, strict=True))
        self.command_lines: dict[str, list[str]] = {}
        self.restarted: dict[str, subprocess.Popen] = {}
        self.pids_file = pathlib.Path(os.environ.get("PERF_DIR", "/tmp/perf")) / "etcd3" / "pids"

    def write(self, node: str, key: int) -> tuple[str, bytes, dict]:
        body = json.dumps({"key": base64.b64encode(f"failover/k{key}".encode()).decode(),
                           "value": base64.b64encode(b"v" * value_bytes).decode()}).encode()
        return f"{self.urls[node]}/v3/kv/put", body, {}

    def leader(self) -> str:
        deadline = time.monotonic() + failover_wait_seconds_max
        while time.monotonic() < deadline:
            for node, url in self.urls.items():
                status = self._status(url)
                if status and status.get("leader") and status["leader"] == status["header"]["member_id"]:
                    return node
            time.sleep(0.1)
        raise RuntimeError(f"etcd: no member says it leads after {failover_wait_seconds_max} s")

    @staticmethod
    def _status(url: str) -> dict | None:
        parts = urllib.parse.urlsplit(url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=1)
        try:
            connection.request("POST", "/v3/maintenance/status", b"{}", {"Content-Type": "application/json"})
            response = connection.getresponse()
            return json.loads(response.read()) if response.status == 200 else None
        except (OSError, http.client.HTTPException, ValueError):
            return None
        finally:
            connection.close()

    def kill(self, node: str) -> None:
        pid = self.pids[node]
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            self.command_lines[node] = [part.decode() for part in file.read().split(b"\0") if part]
        os.kill(pid, signal.SIGKILL)
        if node in self.restarted:
            self.restarted.pop(node).wait(timeout=recover_seconds_max)

    def recover(self, node: str) -> None:
        log = self.pids_file.parent / f"{node}.log"
        with open(log, "ab") as output:
            process = subprocess.Popen(self.command_lines[node], stdout=output, stderr=subprocess.STDOUT)
        self.restarted[node] = process
        self._replace_pid(self.pids[node], process.pid)
        self.pids[node] = process.pid
        deadline = time.monotonic() + recover_seconds_max
        while not all(self._healthy(url) for url in self.urls.values()):
            if process.poll() is not None:
                raise RuntimeError(f"etcd {node} exited {process.returncode} on restart; see {log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"etcd not healthy {recover_seconds_max} s after restarting {node}")
            time.sleep(0.1)

    @staticmethod
    def _healthy(url: str) -> bool:
        parts = urllib.parse.urlsplit(url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=1)
        try:
            connection.request("GET", "/health")
            return b'"health":"true"' in connection.getresponse().read()
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()

    def _replace_pid(self, old: int, new: int | None) -> None:
        lines = self.pids_file.read_text().split()
        self.pids_file.write_text("".join(f"{line}\n" for line in lines if line != str(old))
                                  + (f"{new}\n" if new else ""))

    def close(self) -> None:
        """Stop the members restarted here (our children: reaped here), then the rest with `stop 3`."""
        for node, process in self.restarted.items():
            process.terminate()
            try:
                process.wait(timeout=recover_seconds_max / 4)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=recover_seconds_max / 4)
            self._replace_pid(process.pid, None)
            self.pids.pop(node)
        self.restarted.clear()
        etcd_script("stop", "3")


def run_trials(target, args) -> list[dict]:
    writer = Writer(target, args.request_timeout)
    records = []
    for number in range(1, args.trials + 1):
        records.append(trial(target, writer, number, args))
        emit(records[-1], args.out)
    records.append(summary(records, target))
    emit(records[-1], args.out)
    return records


def measure_etcd(args) -> list[dict]:
    target = EtcdTarget(*start_etcd())
    try:
        return run_trials(target, args)
    finally:
        target.close()


def measure_vaultd(args) -> list[dict]:
    try:
        from vaultd import devcluster
    except ImportError as error:
        raise Skipped(f"vaultd.devcluster is not there yet ({error})") from error
    with tempfile.TemporaryDirectory(prefix="failover-bench-") as scratch, \
            ready_cluster(devcluster, pathlib.Path(scratch)) as cluster:
        return run_trials(VaultdTarget(cluster), args)


def emit(record: dict, out: str | None) -> None:
    print(json.dumps(record), flush=True)
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "a") as file:
            file.write(json.dumps(record) + "\n")


def table(summaries: dict[str, dict]) -> str:
    vaultd, etcd = summaries.get("vaultd3"), summaries.get("etcd3")

    def cell(record, field):
        return "-" if not record or record[field] is None else f"{record[field]:.3f}"

    def ratio(field):
        if not vaultd or not etcd or not vaultd[field] or not etcd[field]:
            return "-"
        return f"{vaultd[field] / etcd[field]:.2f}"

    lines = ["| | vaultd3 s | etcd3 s | vaultd ÷ etcd |", "|---|---|---|---|"]
    for field in ("median_s", "max_s", "min_s"):
        lines.append(f"| {field[:-2]} | {cell(vaultd, field)} | {cell(etcd, field)} | {ratio(field)} |")
    for record in (vaultd, etcd):
        if record and record["timed_out"]:
            lines.append(f"{record['label']}: {record['timed_out']} of {record['trials']} trials timed out "
                         f"(no acknowledged write within {failover_wait_seconds_max} s)")
    if vaultd and vaultd["median_s"] is not None:
        met = "met" if vaultd["median_s"] <= failover_goal_median_seconds else "NOT met"
        lines.append(f"goal: vaultd median <= {failover_goal_median_seconds} s: {met}")
    return "\n".join(lines)


MEASURES = {"etcd": measure_etcd, "vaultd": measure_vaultd}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--request-timeout", type=float, default=0.25,
                        help="seconds per socket operation (default 0.25): the resolution of the failover time")
    parser.add_argument("--steady-seconds", type=float, default=1.0, help="writing before each kill")
    parser.add_argument("--targets", default="etcd,vaultd", help="comma list of etcd, vaultd")
    parser.add_argument("--out", help="append the JSON lines here")
    args = parser.parse_args()
    targets = [name for name in args.targets.split(",") if name]
    if unknown := set(targets) - set(MEASURES):
        parser.error(f"unknown targets {sorted(unknown)}; choose from {sorted(MEASURES)}")
    if args.trials < 1 or args.request_timeout <= 0 or args.steady_seconds <= 0:
        parser.error("--trials, --request-timeout and --steady-seconds must be positive")
    summaries, notes, failed = {}, [], False
    for name in targets:
        try:
            records = MEASURES[name](args)
        except Skipped as reason:
            notes.append(f"{name} skipped: {reason}")
            print(notes[-1], file=sys.stderr)
            continue
        except Exception as error:  # report it, and still print the other target's figures
            traceback.print_exc()
            notes.append(f"{name} failed: {type(error).__name__}: {error}")
            failed = True
            continue
        summaries[records[-1]["label"]] = records[-1]
    print()
    print(table(summaries))
    for line in notes:
        print(line)
    timed_out = sum(record["timed_out"] for record in summaries.values())
    return 1 if failed or timed_out or not summaries else 0


if __name__ == "__main__":
    sys.exit(main())
