"""Faults on a real 3-node cluster (vaultd/devcluster.py): what Raft promises must survive them.

- kill -9 of the leader under write load loses no acknowledged write. Writer threads write distinct keys
  through every node, each request bounded; a write is acknowledged by a 200 (which must carry X-Vault-Index),
  anything else (error, timeout, refused) is indeterminate and promises nothing. The leader is SIGKILLed mid-load;
  writing goes on until the new leader has acknowledged writes, then the killed node comes back, and every
  acknowledged write must be readable with its exact value and version on every node (X-Vault-Index at the
  highest acknowledged index, so a standby waits until it has caught up; a 412 is a failure). The new leader's
  writes must also land above every index acknowledged before the kill (leader completeness).
- A partitioned leader never serves a stale read. partition_scenario.py runs inside `unshare -rn` (a private
  network namespace: its iptables rules vanish with it) and reports what it saw as JSON; this test judges it.
  After the majority side acknowledged k = "new", every read of k on the cut-off old leader must fail (timeout,
  5xx; 412 with X-Vault-Index) or answer "new", never "old"; after the heal the old leader must be a standby
  that serves "new".

Timings (failover, election) are printed for information; only generous liveness bounds are asserted.
"""

import dataclasses
import json
import pathlib
import shutil
import subprocess
import sys
import threading
import time

import pytest
import requests

writer_threads = 4
write_timeout_seconds = 3.0  # one write; past it the write is indeterminate
failed_write_backoff_seconds = 0.01  # after a failed write, so that a refused connect does not spin a core
acknowledged_before_kill_min = 100
acknowledged_after_kill_min = 50  # writes sent after the kill and acknowledged by the new leader
warmup_seconds_max = 30.0
failover_seconds_max = 30.0  # liveness only: a new leader must acknowledge writes by then
recover_seconds_max = 60.0
read_timeout_seconds = 10.0  # one verification read (a standby waits up to 2 s for X-Vault-Index)
writer_join_seconds = write_timeout_seconds + 5.0
assert failed_write_backoff_seconds < write_timeout_seconds < failover_seconds_max

scenario_path = pathlib.Path(__file__).with_name("partition_scenario.py")
namespace_command = ["unshare", "-rn", "--pid", "--fork", "--kill-child", "--"]  # the pid namespace reaps the nodes
scenario_timeout_seconds = 150.0  # under the module's 180 s pytest timeout


# --- kill -9 of the leader under write load ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Acknowledged:
    key: str
    value: str
    index: int | None  # X-Vault-Index of the answer; None when it lacked one (a server fault, reported)
    version: int  # KV v2 version the answer reported
    node: str  # the node the write was sent to
    sent: float  # time.monotonic()
    answered: float


class WriteLoad:
    """Writer threads, each writing its own keys through the nodes in turn until stopped. Every acknowledged
    write is kept; the rest are counted as indeterminate (their error kinds too)."""

    def __init__(self, urls: dict[str, str], token: str):
        self.urls, self.token = urls, token
        self.stopping = threading.Event()
        self.changed = threading.Condition()
        self.acknowledged: list[Acknowledged] = []
        self.indeterminate: dict[str, int] = {}  # error kind -> count
        self.threads = [threading.Thread(target=self._write, args=(number,), name=f"writer-{number}", daemon=True)
                        for number in range(writer_threads)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(writer_join_seconds)
        assert not any(thread.is_alive() for thread in self.threads), "a writer outlived its request timeout"

    def wait_acknowledged(self, count: int, sent_after: float, timeout: float) -> list[Acknowledged]:
        """The acknowledged writes sent at or after `sent_after`, once there are `count` of them (or the timeout)."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                chosen = [write for write in self.acknowledged if write.sent >= sent_after]
                remaining = deadline - time.monotonic()
                if len(chosen) >= count or remaining <= 0:
                    return chosen
                self.changed.wait(remaining)

    def _write(self, number: int) -> None:
        session = requests.Session()
        nodes = sorted(self.urls)
        sequence = 0
        while not self.stopping.is_set():
            node = nodes[(number + sequence) % len(nodes)]
            key = f"w{number}-{sequence}"
            value = f"value of {key}"
            sequence += 1
            sent = time.monotonic()
            try:
                answer = session.post(f"{self.urls[node]}/v1/secret/data/load/{key}", json={"data": {"v": value}},
                                      headers={"X-Vault-Token": self.token}, timeout=write_timeout_seconds)
            except requests.RequestException as error:
                self._failed(type(error).__name__)
                continue
            if answer.status_code != 200:
                self._failed(f"HTTP {answer.status_code}")
                continue
            index = answer.headers.get("X-Vault-Index")
            write = Acknowledged(key, value, None if index is None else int(index), answer.json()["data"]["version"],
                                 node, sent, time.monotonic())
            with self.changed:
                self.acknowledged.append(write)
                self.changed.notify_all()
        session.close()

    def _failed(self, kind: str) -> None:
        with self.changed:
            self.indeterminate[kind] = self.indeterminate.get(kind, 0) + 1
        self.stopping.wait(failed_write_backoff_seconds)


def unreadable_writes(url: str, token: str, writes: list[Acknowledged], index: int) -> list[str]:
    """Each acknowledged write that `url` does not serve with its exact value and version, and why."""
    wrong = []
    headers = {"X-Vault-Token": token, "X-Vault-Index": str(index)}
    with requests.Session() as session:
        for write in writes:
            answer = session.get(f"{url}/v1/secret/data/load/{write.key}", headers=headers,
                                 timeout=read_timeout_seconds)
            if answer.status_code != 200:
                wrong.append(f"{write.key} (index {write.index}): HTTP {answer.status_code} {answer.text[:120]}")
                continue
            data = answer.json()["data"]
            if data["data"] != {"v": write.value} or data["metadata"]["version"] != write.version:
                wrong.append(f"{write.key} (index {write.index}): {data['data']} version {data['metadata']['version']}"
                             f", acknowledged {write.value!r} version {write.version}")
    return wrong


def test_kill_9_of_the_leader_under_write_load_loses_no_acknowledged_write(cluster):
    devcluster = cluster.devcluster
    load = WriteLoad({node: cluster.url(node) for node in devcluster.node_ids}, cluster.token)
    load.start()
    try:
        before = load.wait_acknowledged(acknowledged_before_kill_min, 0.0, warmup_seconds_max)
        assert len(before) >= acknowledged_before_kill_min, f"only {len(before)} writes acknowledged before the kill"
        victim = devcluster.wait_for_leader(timeout=10)
        killed_at = time.monotonic()
        devcluster.kill(victim)
        new_leader = devcluster.wait_for_leader(timeout=failover_seconds_max)
        elected_seconds = time.monotonic() - killed_at
        after = load.wait_acknowledged(acknowledged_after_kill_min, killed_at, failover_seconds_max)
        assert len(after) >= acknowledged_after_kill_min, (
            f"{failover_seconds_max:g}s after the kill only {len(after)} writes sent since were acknowledged; "
            f"indeterminate: {load.indeterminate}")
    finally:
        load.stop()
    indexes_before_kill = [write.index for write in load.acknowledged if write.answered < killed_at and write.index]
    indexes_after_kill = [write.index for write in after if write.index]
    failover_seconds = min(write.answered for write in after) - killed_at
    devcluster.start(victim)
    devcluster.unseal(victim)
    devcluster.wait_healthy(timeout=recover_seconds_max)
    highest = max(write.index or 0 for write in load.acknowledged)
    lost = {node: unreadable_writes(cluster.url(node), cluster.token, load.acknowledged, highest)
            for node in devcluster.node_ids}
    unindexed = [f"{write.key} via {write.node}, sent {write.sent - killed_at:+.3f}s from the kill, answered "
                 f"{write.answered - killed_at:+.3f}s" for write in load.acknowledged if write.index is None]
    print(json.dumps({"killed": victim, "new_leader": new_leader, "leader_seen_after_s": round(elected_seconds, 3),
                      "failover_s": round(failover_seconds, 3), "acknowledged": len(load.acknowledged),
                      "acknowledged_after_kill": len(after), "indeterminate": load.indeterminate,
                      "highest_index": highest, "acknowledged_without_index": unindexed}))
    assert all(not wrong for wrong in lost.values()), "acknowledged writes not served (first 5 per node): " + "; ".join(
        f"{node}: {wrong[:5]} ({len(wrong)} in all)" for node, wrong in lost.items() if wrong)
    assert not unindexed, f"writes acknowledged (200) without X-Vault-Index: {unindexed}"
    # Leader completeness: the new leader's log holds every committed entry, and it appends after them.
    assert min(indexes_after_kill) > max(indexes_before_kill)


# --- a partitioned leader ------------------------------------------------------------------------------------


def run_in_namespace(arguments: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run `arguments` inside a fresh user, network and pid namespace; on timeout, SIGKILL our unshare, whose
    --kill-child then kills the namespace's first process and with it every process inside."""
    command = namespace_command + arguments
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except FileNotFoundError:
        pytest.fail(f"`{' '.join(command)}`: unshare is not installed (util-linux)")
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate(timeout=30)
        pytest.fail(f"`{' '.join(command)}` did not finish within {timeout:g}s\nstdout: {stdout[-2000:]}\n"
                    f"stderr: {stderr[-4000:]}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def require_namespaces_and_iptables() -> None:
    if shutil.which("iptables") is None:
        pytest.fail("iptables is not installed; the partition test cuts links with it (apt-get install iptables)")
    probe = run_in_namespace(["iptables", "-w", "-S", "OUTPUT"], timeout=30)
    if probe.returncode != 0:
        pytest.fail(f"`{' '.join(probe.args)}` failed (exit {probe.returncode}): {probe.stderr.strip()}\nThe "
                    "partition test needs a private network namespace (unshare -rn) with its own iptables.")


def failed_or_new(read: dict, *, allowed_statuses=()) -> bool:
    """A read on the cut-off old leader that did not return stale data: no answer, 5xx, or "new"."""
    if read["outcome"] != "answered":
        return True
    status = read["status"]
    return status >= 500 or status in allowed_statuses or (status == 200 and read.get("value") == "new")


def test_a_partitioned_leader_never_serves_a_stale_read(tmp_path):
    require_namespaces_and_iptables()
    completed = run_in_namespace([sys.executable, str(scenario_path), str(tmp_path)], scenario_timeout_seconds)
    lines = completed.stdout.strip().splitlines()
    assert lines, f"the scenario printed nothing (exit {completed.returncode}): {completed.stderr[-4000:]}"
    observed = json.loads(lines[-1])
    print(json.dumps(observed, indent=1))
    context = f"\nobserved: {json.dumps(observed)}\nnode logs: {tmp_path / 'logs'}"
    assert completed.returncode == 0, (f"the scenario exited {completed.returncode}: "
                                       f"{observed.get('aborted') or completed.stderr[-4000:]}{context}")
    reads = observed["partitioned_reads"] + [observed["partitioned_index_read"]]
    stale = [read for read in reads if read.get("value") == "old"]
    assert not stale, f"the cut-off old leader served k = old after k = new was acknowledged: {stale}{context}"
    assert all(failed_or_new(read) for read in observed["partitioned_reads"]), context
    assert failed_or_new(observed["partitioned_index_read"], allowed_statuses=(412,)), context

    after_heal = observed["old_leader_after_heal"]
    majority = [url for node, url in observed["nodes"].items() if node != observed["old_leader"]]
    assert after_heal["health"] == 473 and after_heal["is_self"] is False, context
    assert after_heal["leader_address"] in majority, context
    healed = observed["healed_index_read"]
    assert healed.get("status") == 200 and healed.get("value") == "new", context
