"""Real vaultd processes on loopback for the HTTP and hvac tests.

`dev_server` runs `vaultd server --dev` (initialised, unsealed, KV v2 at secret/); `fresh_server` runs a
node from a cluster.toml with a Shamir seal, uninitialised. Each waits (bounded) until the node answers
/v1/sys/health, and is terminated by PID afterwards.
"""

import dataclasses
import os
import pathlib
import socket
import subprocess
import sys
import time

import pytest
import requests

ROOT = pathlib.Path(__file__).resolve().parents[2]
start_timeout_seconds = 30


@dataclasses.dataclass
class Node:
    url: str
    process: subprocess.Popen
    data_dir: pathlib.Path | None
    log_path: pathlib.Path
    root_token: str = ""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_raft_key(path: pathlib.Path) -> None:
    """A real cluster key, as `vaultd operator raft-key` writes it (every node from a cluster.toml runs Raft)."""
    if not path.exists():
        subprocess.run([sys.executable, "-m", "vaultd", "operator", "raft-key", str(path)], check=True, cwd=ROOT,
                       capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def _start(arguments: list[str], log_path: pathlib.Path, url: str, cwd: pathlib.Path) -> subprocess.Popen:
    if "--config" in arguments:
        write_raft_key(cwd / "raft.key")
    log = open(log_path, "wb")  # noqa: SIM115 - the child writes to it until it ends
    process = subprocess.Popen([sys.executable, "-m", "vaultd", *arguments], cwd=cwd, stdout=log,
                               stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + start_timeout_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"vaultd exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            requests.get(url + "/v1/sys/health", timeout=1, verify=False)  # noqa: S501 - only a liveness poll
            return process
        except requests.ConnectionError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"vaultd did not answer within {start_timeout_seconds} s")


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture
def dev_server(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "vaultd.log"
    process = _start(["server", "--dev", "--dev-root-token-id", "root-token-for-tests",
                      "--dev-listen-address", f"127.0.0.1:{port}"], log_path, url, tmp_path)
    yield Node(url, process, None, log_path, root_token="root-token-for-tests")
    _stop(process)


@pytest.fixture
def fresh_server(tmp_path):
    port, raft_port = free_port(), free_port()
    (tmp_path / "cluster.toml").write_text(
        f"""
[cluster]
name = "test"
raft_key_file = "raft.key"

[seal]
type = "shamir"

[[node]]
id = "n1"
api_addr = "127.0.0.1:{port}"
raft_addr = "127.0.0.1:{raft_port}"
data_dir = "data/n1"
"""
    )
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "vaultd.log"
    process = _start(["server", "--config", "cluster.toml", "--node", "n1"], log_path, url, tmp_path)
    yield Node(url, process, tmp_path / "data" / "n1", log_path)
    _stop(process)
