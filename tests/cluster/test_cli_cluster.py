"""`vaultd operator raft ...` and `vaultd operator step-down` against a real cluster, pointed at a standby."""

import os
import subprocess
import sys

import requests

from vaultd.devcluster import repo_root


def vaultd(cluster, node: str, *arguments: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "VAULT_ADDR": cluster.url(node), "VAULT_TOKEN": cluster.token,
                   "PYTHONPATH": str(repo_root)}
    return subprocess.run([sys.executable, "-m", "vaultd", *arguments], capture_output=True, text=True,
                          env=environment, timeout=60)


def test_list_peers_snapshot_save_restore_and_step_down_through_a_standby(cluster, tmp_path):
    standby = cluster.standbys()[0]
    peers = vaultd(cluster, standby, "operator", "raft", "list-peers")
    assert peers.returncode == 0, peers.stderr
    rows = [line.split() for line in peers.stdout.splitlines()[2:] if line.strip()]
    assert sorted(row[0] for row in rows) == ["n1", "n2", "n3"]
    assert [row[0] for row in rows if row[2] == "leader"] == [cluster.leader]

    headers = {"X-Vault-Token": cluster.token}
    requests.post(cluster.url(cluster.leader) + "/v1/secret/data/cli", json={"data": {"v": "saved"}}, headers=headers)
    snapshot = tmp_path / "raft.snap"
    saved = vaultd(cluster, standby, "operator", "raft", "snapshot", "save", str(snapshot))
    assert saved.returncode == 0, saved.stderr
    assert snapshot.read_bytes().startswith(b"VDSNAP01") and oct(snapshot.stat().st_mode & 0o777) == "0o600"
    requests.post(cluster.url(cluster.leader) + "/v1/secret/data/cli", json={"data": {"v": "later"}}, headers=headers)
    restored = vaultd(cluster, standby, "operator", "raft", "snapshot", "restore", str(snapshot))
    assert restored.returncode == 0, restored.stderr
    read = requests.get(cluster.url(cluster.leader) + "/v1/secret/data/cli", headers=headers).json()
    assert read["data"]["data"] == {"v": "saved"}  # same keys: restored in place, no unseal needed

    stepped = vaultd(cluster, standby, "operator", "step-down")
    assert stepped.returncode == 0, stepped.stderr
    before = cluster.leader
    assert cluster.refresh_leader() != before
