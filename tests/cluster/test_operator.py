"""Raft operator endpoints on real clusters: join and remove-peer, a far-behind follower catching up by
snapshot install, autopilot state, and snapshot save, wipe, restore."""

import shutil
import time

import requests

from .conftest import start_cluster

WRITES = 60


def write_many(running, prefix: str, count: int) -> str:
    """`count` KV writes on the leader; the X-Vault-Index of the last one."""
    index = ""
    for number in range(count):
        answer = requests.post(running.url(running.leader) + f"/v1/secret/data/{prefix}{number}",
                               json={"data": {"n": number}}, headers={"X-Vault-Token": running.token})
        assert answer.status_code == 200, answer.text
        index = answer.headers["X-Vault-Index"]
    return index


def read_all(running, node: str, prefix: str, count: int, index: str) -> list:
    headers = {"X-Vault-Token": running.token, "X-Vault-Index": index}
    values = []
    for number in range(count):
        answer = requests.get(running.url(node) + f"/v1/secret/data/{prefix}{number}", headers=headers)
        values.append(answer.json()["data"]["data"]["n"] if answer.status_code == 200 else answer.status_code)
    return values


def servers(running) -> dict:
    answer = requests.get(running.url(running.leader) + "/v1/sys/storage/raft/configuration",
                          headers={"X-Vault-Token": running.token})
    assert answer.status_code == 200, answer.text
    return {server["node_id"]: server for server in answer.json()["data"]["config"]["servers"]}


def test_a_new_node_joins_catches_up_by_snapshot_and_is_removed(tmp_path):
    running = start_cluster(tmp_path, joiners=1, raft_table="snapshot_threshold = 20")
    devcluster = running.devcluster
    try:
        index = write_many(running, "before-join/", WRITES)  # more than the threshold: the journal is cut
        devcluster.start("n4")
        assert devcluster.health_status("n4") == 501  # waiting for a join: nothing of the cluster yet
        standby = running.standbys()[0]
        joined = devcluster.request("n4", "POST", "/v1/sys/storage/raft/join",
                                    {"leader_api_addr": running.url(standby)})  # a standby forwards the handshake
        assert joined.status == 200 and joined.json() == {"joined": True}, joined.text()
        devcluster.unseal("n4")
        assert read_all(running, "n4", "before-join/", WRITES, index) == list(range(WRITES))
        assert set(servers(running)) == {"n1", "n2", "n3", "n4"}
        later = write_many(running, "after-join/", 5)
        assert read_all(running, "n4", "after-join/", 5, later) == list(range(5))
        state = requests.get(running.url(running.leader) + "/v1/sys/storage/raft/autopilot/state",
                             headers={"X-Vault-Token": running.token}).json()["data"]
        assert set(state["servers"]) == {"n1", "n2", "n3", "n4"} and state["leader"] == running.leader
        removed = requests.post(running.url(running.leader) + "/v1/sys/storage/raft/remove-peer",
                                json={"server_id": "n4"}, headers={"X-Vault-Token": running.token})
        assert removed.status_code == 204, removed.text
        assert set(servers(running)) == {"n1", "n2", "n3"}
        devcluster.stop("n4")
        write_many(running, "after-remove/", 3)  # the three keep committing without n4
    finally:
        devcluster.close()


def test_a_stopped_follower_far_behind_catches_up_by_snapshot_install(tmp_path):
    running = start_cluster(tmp_path, raft_table="snapshot_threshold = 20")
    devcluster = running.devcluster
    try:
        behind = running.standbys()[0]
        devcluster.stop(behind)
        index = write_many(running, "while-down/", WRITES)
        devcluster.start(behind)
        devcluster.unseal(behind)
        assert read_all(running, behind, "while-down/", WRITES, index) == list(range(WRITES))
        journal_entries = requests.get(running.url(behind) + "/v1/sys/leader").json()["raft_applied_index"]
        assert journal_entries >= int(index)
    finally:
        devcluster.close()


def test_snapshot_save_wipe_the_cluster_and_restore_brings_all_data_back(tmp_path):
    first = start_cluster(tmp_path / "first")
    old_token, old_keys = first.token, list(first.devcluster.keys)
    headers = {"X-Vault-Token": old_token}
    try:
        write_many(first, "kept/", 20)
        redirected = requests.get(first.url(first.standbys()[0]) + "/v1/sys/storage/raft/snapshot", headers=headers,
                                  allow_redirects=False)
        assert redirected.status_code == 307  # snapshots always go to the active node
        saved = requests.get(first.url(first.standbys()[0]) + "/v1/sys/storage/raft/snapshot", headers=headers)
        assert saved.status_code == 200 and saved.content.startswith(b"VDSNAP01")
        assert b'"n": 3' not in saved.content  # values are barrier ciphertext, never plaintext
        write_many(first, "after-save/", 1)
    finally:
        first.devcluster.close()
    shutil.rmtree(tmp_path / "first")  # the whole cluster is gone: data, journals, keys

    second = start_cluster(tmp_path / "second")
    try:
        url = second.url(second.leader) + "/v1/sys/storage/raft/snapshot"
        refused = requests.post(url, data=saved.content, headers={"X-Vault-Token": second.token})
        assert refused.status_code == 400 and "snapshot-force" in refused.json()["errors"][0]
        forced = requests.post(url + "-force", data=saved.content, headers={"X-Vault-Token": second.token})
        assert forced.status_code == 204, forced.text
        second.devcluster.set_init_result({**second.devcluster.init_result, "keys": old_keys,
                                           "root_token": old_token})
        wait_until_sealed(second)  # another cluster's keyring: every node seals
        second.devcluster.unseal()
        second.refresh_leader()
        assert read_all(second, second.leader, "kept/", 20, "0") == list(range(20))
        marker = write_many(second, "marker/", 1)  # this cluster's indexes, not the first one's
        for node in second.standbys():
            assert read_all(second, node, "kept/", 20, marker) == list(range(20))
        assert requests.get(second.url(second.leader) + "/v1/secret/data/after-save/0",
                            headers=headers).status_code == 404
    finally:
        second.devcluster.close()


def wait_until_sealed(running, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        statuses = {node: running.devcluster.health_status(node) for node in running.devcluster.bootstrap_ids}
        if all(status == 503 for status in statuses.values()):
            return
        assert time.monotonic() < deadline, f"not every node sealed after the forced restore: {statuses}"
        time.sleep(0.1)
