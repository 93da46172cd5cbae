"""The vaultd nodes of one run, as child processes driven by PID and over HTTP only.

Node i (from 1) is `n<i>` on 127.0.0.<10+i>, with a free API port and a free Raft port on its own address; vaultd
binds its listeners and its outgoing raft and forwarding connections to that address, which is what lets an
iptables rule on source and destination cut one link (jepsen.md §4 (i)). The harness itself talks from
127.0.0.1. `write_config` writes the run's own cluster.toml (a Shamir seal, a modest `[raft]
snapshot_threshold` so that snapshots and journal cuts happen during the run) and makes the Raft key with
`python -m vaultd operator raft-key`. With `unsafe_stale_reads` the config sets the test-only server setting
and the nodes get VAULTD_ALLOW_UNSAFE=1: the leader then skips its read barrier, the mutation the suite must catch.

Each node runs `python -m vaultd server --config C --node ID` in its own session, its output appended to
`<run>/nodes/<id>.log`. Every wait has a deadline and ends in WaitTimeout naming what did not happen.
"""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time

from .client import Answer, Client, perform
from .errors import ClusterError, WaitTimeout

repo_root = pathlib.Path(__file__).resolve().parents[1]
first_host_octet = 11  # n1 = 127.0.0.11
nodes_max = 9
snapshot_threshold_entries = 1000  # vaultd's default is 5000: a run should see snapshots and journal cuts
answer_timeout_seconds = 30.0  # a spawned node must answer /v1/sys/health by then
setup_timeout_seconds = 30.0  # init, unseal, mount, leader: each
probe_timeout_seconds = 1.0
poll_interval_seconds = 0.1
stop_timeout_seconds = 10.0  # SIGTERM, then SIGKILL
reap_timeout_seconds = 10.0
raft_key_timeout_seconds = 60.0
log_tail_bytes = 3000
assert poll_interval_seconds < probe_timeout_seconds < answer_timeout_seconds


class Node:
    """One node's addresses and, while it runs, its process."""

    def __init__(self, number: int, api_port: int, raft_port: int):
        self.id = f"n{number}"
        self.host = f"127.0.0.{first_host_octet + number - 1}"
        self.api_port, self.raft_port = api_port, raft_port
        self.process: subprocess.Popen | None = None
        self.paused = False

    @property
    def api_addr(self) -> str:
        return f"{self.host}:{self.api_port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.api_addr}"


class Cluster:
    """The nodes of one run. Thread-safe: the nemesis and the runner both drive it."""

    def __init__(self, run_dir: pathlib.Path, node_count: int, *, unsafe_stale_reads: bool = False,
                 node_environment=None):
        if not 1 <= node_count <= nodes_max:
            raise ClusterError(f"want 1 to {nodes_max} nodes, not {node_count}")
        self.run_dir = pathlib.Path(run_dir)
        self.directory = self.run_dir / "cluster"
        self.log_dir = self.run_dir / "nodes"
        self.config_path = self.directory / "cluster.toml"
        self.unsafe_stale_reads = unsafe_stale_reads
        self.node_environment = node_environment or (lambda node_id: {})  # node id -> extra env (the clock)
        ports = _free_ports([f"127.0.0.{first_host_octet + index}" for index in range(node_count)])
        self.nodes = {node.id: node for node in (Node(index + 1, *ports[index]) for index in range(node_count))}
        self.node_ids = tuple(self.nodes)
        self.keys: list[str] = []
        self.root_token: str | None = None
        self._lock = threading.RLock()

    # --- config ----------------------------------------------------------------------------------------------

    def write_config(self) -> pathlib.Path:
        self.directory.mkdir(parents=True, mode=0o700, exist_ok=False)
        (self.directory / "data").mkdir(mode=0o700)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        key_path = self.directory / "data" / "raft.key"
        completed = subprocess.run([sys.executable, "-m", "vaultd", "operator", "raft-key", str(key_path)],
                                   capture_output=True, text=True, env=self._environment(None),
                                   timeout=raft_key_timeout_seconds, cwd=self.directory)
        if completed.returncode != 0:
            raise ClusterError(f"vaultd operator raft-key exited {completed.returncode}: {completed.stderr.strip()}")
        lines = ["# Written by jepsen_lite.cluster for one chaos run.", "", "[cluster]", 'name = "jepsen-lite"',
                 'raft_key_file = "data/raft.key"', 'request_forwarding = "forward"']
        if self.unsafe_stale_reads:
            lines.append("unsafe_stale_reads = true  # TEST ONLY: the mutation run; needs VAULTD_ALLOW_UNSAFE=1")
        lines += ["", "[seal]", 'type = "shamir"', "", "[raft]", f"snapshot_threshold = {snapshot_threshold_entries}"]
        for node in self.nodes.values():
            lines += ["", "[[node]]", f'id = "{node.id}"', f'api_addr = "{node.api_addr}"',
                      f'raft_addr = "{node.host}:{node.raft_port}"', f'data_dir = "data/{node.id}"']
        self.config_path.write_text("\n".join(lines) + "\n")
        return self.config_path

    def _environment(self, node_id: str | None) -> dict[str, str]:
        environment = {key: value for key, value in os.environ.items() if key != "VAULTD_ALLOW_UNSAFE"}
        environment["PYTHONPATH"] = os.pathsep.join(
            part for part in (str(repo_root), environment.get("PYTHONPATH", "")) if part)
        environment["PYTHONUNBUFFERED"] = "1"  # the log survives a SIGKILL
        if self.unsafe_stale_reads:
            environment["VAULTD_ALLOW_UNSAFE"] = "1"
        if node_id is not None:
            environment.update(self.node_environment(node_id))
        return environment

    # --- processes -------------------------------------------------------------------------------------------

    def start(self, node_id: str) -> None:
        """Spawn `node_id` and wait until it answers /v1/sys/health (any status)."""
        node = self.nodes[node_id]
        with self._lock:
            if self.running(node_id):
                raise ClusterError(f"{node_id} is already running (pid {node.process.pid})")
            with open(self.log_path(node_id), "ab") as log:
                log.write(f"--- jepsen_lite: starting {node_id} at {time.strftime('%H:%M:%S')} ---\n".encode())
                log.flush()
                node.process = subprocess.Popen(
                    [sys.executable, "-m", "vaultd", "server", "--config", str(self.config_path), "--node", node_id],
                    cwd=self.directory, env=self._environment(node_id), stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True)
            node.paused = False
        self._wait_answering(node_id, time.monotonic() + answer_timeout_seconds)

    def start_all(self) -> None:
        for node_id in self.node_ids:
            self.start(node_id)

    def _wait_answering(self, node_id: str, deadline: float) -> None:
        while True:
            self._check_alive(node_id)
            result = self.request(node_id, "GET", "/v1/sys/health")
            if isinstance(result, Answer):
                return
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"{node_id} did not answer {self.nodes[node_id].api_url}/v1/sys/health within "
                                  f"{answer_timeout_seconds:g}s ({result}); its log ends:\n{self.log_tail(node_id)}")
            time.sleep(poll_interval_seconds)

    def _check_alive(self, node_id: str) -> None:
        process = self.nodes[node_id].process
        if process is None or process.poll() is not None:
            status = None if process is None else process.returncode
            raise ClusterError(f"{node_id} is not running (exit status {status}); its log ends:\n"
                               f"{self.log_tail(node_id)}")

    def running(self, node_id: str) -> bool:
        """Started and not exited (a paused node is running)."""
        process = self.nodes[node_id].process
        return process is not None and process.poll() is None

    def pid(self, node_id: str) -> int | None:
        process = self.nodes[node_id].process
        return None if process is None else process.pid

    def kill(self, node_id: str) -> None:
        """SIGKILL `node_id` by PID and reap it."""
        with self._lock:
            self._check_alive(node_id)
            node = self.nodes[node_id]
            node.process.send_signal(signal.SIGKILL)
            try:
                node.process.wait(timeout=reap_timeout_seconds)
            except subprocess.TimeoutExpired:
                raise ClusterError(f"{node_id} (pid {node.process.pid}) outlived SIGKILL by "
                                   f"{reap_timeout_seconds:g}s") from None
            node.paused = False

    def pause(self, node_id: str) -> None:
        with self._lock:
            self._check_alive(node_id)
            self.nodes[node_id].process.send_signal(signal.SIGSTOP)
            self.nodes[node_id].paused = True

    def resume(self, node_id: str) -> None:
        with self._lock:
            self._check_alive(node_id)
            self.nodes[node_id].process.send_signal(signal.SIGCONT)
            self.nodes[node_id].paused = False

    def resume_all(self) -> None:
        for node_id, node in self.nodes.items():
            if node.paused and self.running(node_id):
                self.resume(node_id)

    def restart(self, node_id: str) -> None:
        """Start a node that is not running and unseal it (its seal state does not survive a restart)."""
        self.start(node_id)
        self.unseal(node_id)

    def stop_all(self) -> None:
        """SIGCONT what is paused, SIGTERM every running node, SIGKILL what outlives `stop_timeout_seconds`."""
        with self._lock:
            running = [node for node_id, node in self.nodes.items() if self.running(node_id)]
            for node in running:
                node.process.send_signal(signal.SIGTERM)
                if node.paused:
                    node.process.send_signal(signal.SIGCONT)
                node.paused = False
            deadline = time.monotonic() + stop_timeout_seconds
            for node in running:
                try:
                    node.process.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait(timeout=reap_timeout_seconds)

    def log_path(self, node_id: str) -> pathlib.Path:
        return self.log_dir / f"{node_id}.log"

    def log_tail(self, node_id: str) -> str:
        try:
            with open(self.log_path(node_id), "rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - log_tail_bytes))
                return log.read().decode(errors="replace")
        except OSError as error:
            return f"(no log: {error})"

    # --- HTTP ------------------------------------------------------------------------------------------------

    def request(self, node_id: str, method: str, path: str, body=None, *, token: str | None = None,
                timeout_seconds: float = probe_timeout_seconds) -> Answer | ConnectionError:
        """One request on a fresh connection; NotSent or Indeterminate are returned, not raised."""
        node = self.nodes[node_id]
        client = Client(node.host, node.api_port, token, timeout_seconds=timeout_seconds,
                        connect_timeout_seconds=min(timeout_seconds, probe_timeout_seconds))
        try:
            return perform(client, method, path, body)
        finally:
            client.close()

    def health(self, node_id: str) -> int | None:
        result = self.request(node_id, "GET", "/v1/sys/health")
        return result.status if isinstance(result, Answer) else None

    def claims_leadership(self, node_id: str) -> bool:
        """Health 200 and sys/leader is_self: this node believes it is the active node."""
        if self.health(node_id) != 200:
            return False
        result = self.request(node_id, "GET", "/v1/sys/leader")
        return isinstance(result, Answer) and isinstance(result.body, dict) and result.body.get("is_self") is True

    def leader_now(self) -> str | None:
        """One poll of the running, unpaused nodes: the one that claims leadership, or None (none, or several)."""
        claims = [node_id for node_id in self.node_ids
                  if self.running(node_id) and not self.nodes[node_id].paused and self.claims_leadership(node_id)]
        return claims[0] if len(claims) == 1 else None

    def wait_for_leader(self, timeout_seconds: float = setup_timeout_seconds) -> str:
        deadline = time.monotonic() + timeout_seconds
        while True:
            leader = self.leader_now()
            if leader is not None:
                return leader
            if time.monotonic() >= deadline:
                statuses = {node_id: self.health(node_id) for node_id in self.node_ids}
                raise WaitTimeout(f"no single node became the active leader within {timeout_seconds:g}s "
                                  f"(health: {statuses})")
            time.sleep(poll_interval_seconds)

    # --- bring-up ----------------------------------------------------------------------------------------------

    def initialize(self) -> None:
        """PUT sys/init on any running node until one answers 200 (1 share, threshold 1)."""
        last = "no node running"
        deadline = time.monotonic() + setup_timeout_seconds
        while time.monotonic() < deadline:
            for node_id in self.node_ids:
                result = self.request(node_id, "PUT", "/v1/sys/init", {"secret_shares": 1, "secret_threshold": 1},
                                      timeout_seconds=setup_timeout_seconds)
                if isinstance(result, Answer) and result.status == 200 and isinstance(result.body, dict):
                    self.keys, self.root_token = list(result.body["keys"]), result.body["root_token"]
                    return
                last = f"{node_id}: {_describe(result)}"
                if isinstance(result, Answer) and not _retryable(result):
                    raise ClusterError(f"initialising the cluster: {last}")
            time.sleep(poll_interval_seconds)
        raise WaitTimeout(f"no node initialised the cluster within {setup_timeout_seconds:g}s; last: {last}")

    def unseal(self, node_id: str | None = None) -> None:
        """Submit the unseal key to `node_id` (or every running node) until it says unsealed."""
        if not self.keys:
            raise ClusterError("unseal before initialize: no unseal key")
        targets = [node_id] if node_id is not None else [name for name in self.node_ids if self.running(name)]
        for target in targets:
            deadline = time.monotonic() + setup_timeout_seconds
            while True:
                self._check_alive(target)
                result = self.request(target, "PUT", "/v1/sys/unseal", {"key": self.keys[0]},
                                      timeout_seconds=setup_timeout_seconds)
                if isinstance(result, Answer) and result.status == 200 and isinstance(result.body, dict) \
                        and result.body.get("sealed") is False:
                    break
                if isinstance(result, Answer) and result.status != 200 and not _retryable(result):
                    raise ClusterError(f"unsealing {target}: {_describe(result)}")
                if time.monotonic() >= deadline:
                    raise WaitTimeout(f"{target} was not unsealed within {setup_timeout_seconds:g}s; last: "
                                      f"{_describe(result)}")
                time.sleep(poll_interval_seconds)

    def mount_kv(self) -> None:
        """KV v2 at secret/, through whichever node (a standby forwards). An earlier attempt that timed out may
        have mounted it: "already in use" then counts as done."""
        deadline = time.monotonic() + setup_timeout_seconds
        body = {"type": "kv", "options": {"version": "2"}}
        while True:
            for node_id in self.node_ids:
                result = self.request(node_id, "POST", "/v1/sys/mounts/secret", body, token=self.root_token,
                                      timeout_seconds=setup_timeout_seconds)
                if isinstance(result, Answer) and (200 <= result.status < 300 or "already in use" in result.errors()):
                    return
                if isinstance(result, Answer) and not _retryable(result):
                    raise ClusterError(f"mounting KV v2 at secret/: {node_id}: {_describe(result)}")
                if time.monotonic() >= deadline:
                    raise WaitTimeout(f"KV v2 was not mounted within {setup_timeout_seconds:g}s; last: "
                                      f"{_describe(result)}")
            time.sleep(poll_interval_seconds)

    def bring_up(self) -> str:
        """Config, processes, init, unseal, KV v2 at secret/, a leader; the leader's id."""
        self.write_config()
        self.start_all()
        self.initialize()
        self.unseal()
        leader = self.wait_for_leader()
        self.mount_kv()
        return leader

    def describe(self) -> dict[str, str]:
        return {node_id: node.api_addr for node_id, node in self.nodes.items()}


def _free_ports(hosts: list[str]) -> list[tuple[int, int]]:
    """An API and a Raft port for each host, each free when asked (all sockets stay bound until every port is
    chosen, so no two collide)."""
    sockets = []
    try:
        ports = []
        for host in hosts:
            chosen = []
            for _ in range(2):
                bound = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(bound)
                bound.bind((host, 0))
                chosen.append(bound.getsockname()[1])
            ports.append((chosen[0], chosen[1]))
        return ports
    finally:
        for bound in sockets:
            bound.close()


def _describe(result: Answer | ConnectionError) -> str:
    if isinstance(result, Answer):
        return f"HTTP {result.status} {result.errors() or json.dumps(result.body)[:200]}"
    return str(result)


def _retryable(answer: Answer) -> bool:
    """No leader yet (5xx, 429), a 307 to an active node, or a follower without the seal config yet."""
    if answer.status >= 500 or answer.status in (307, 429):
        return True
    return answer.status == 400 and "not initialized" in answer.errors().lower()

