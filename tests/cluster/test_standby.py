"""Performance standbys on a real 3-node cluster: forwarded and redirected writes (hvac), X-Vault-Index,
412, forward-active-node, health and leader status, and the caches a standby must refresh when the leader
changes mounts, policies or the barrier keyring."""

import hvac
import requests

from vaultd.devcluster import DevCluster, write_config

from .conftest import start_cluster


def client(cluster, node: str, **headers) -> hvac.Client:
    vault = hvac.Client(url=cluster.url(node), token=cluster.token)
    vault.session.headers.update(headers)
    return vault


def test_hvac_write_on_a_standby_is_forwarded_and_answered_with_its_index(cluster):
    standby = cluster.standbys()[0]
    answer = requests.post(cluster.url(standby) + "/v1/secret/data/forwarded", json={"data": {"v": "1"}},
                           headers={"X-Vault-Token": cluster.token}, allow_redirects=False)
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["version"] == 1
    assert int(answer.headers["X-Vault-Index"]) > 0
    vault = client(cluster, standby)
    vault.secrets.kv.v2.create_or_update_secret("hvac", {"via": "standby"})
    for node in cluster.devcluster.bootstrap_ids:  # the forwarding node waited for the write; others may lag
        read = requests.get(cluster.url(node) + "/v1/secret/data/hvac", headers={
            "X-Vault-Token": cluster.token, "X-Vault-Index": answer.headers["X-Vault-Index"]})
        assert read.status_code in (200, 404)
    assert vault.secrets.kv.v2.read_secret("hvac")["data"]["data"] == {"via": "standby"}


def test_hvac_write_with_no_request_forwarding_follows_the_307_keeping_body_and_token(cluster):
    standby = cluster.standbys()[0]
    raw = requests.post(cluster.url(standby) + "/v1/secret/data/redirected", json={"data": {"v": "x"}},
                        headers={"X-Vault-Token": cluster.token, "X-Vault-No-Request-Forwarding": "true"},
                        allow_redirects=False)
    assert raw.status_code == 307
    assert raw.headers["Location"] == cluster.url(cluster.leader) + "/v1/secret/data/redirected"
    vault = client(cluster, standby, **{"X-Vault-No-Request-Forwarding": "true"})
    response = vault.secrets.kv.v2.create_or_update_secret("redirected", {"v": "y"})
    assert response["data"]["version"] == 1  # the 307 was followed with the body: the write landed once
    leader = client(cluster, cluster.leader)
    assert leader.secrets.kv.v2.read_secret("redirected")["data"]["data"] == {"v": "y"}


def test_redirect_mode_answers_every_standby_write_with_a_307(tmp_path):
    running = start_cluster(tmp_path, request_forwarding="redirect")
    try:
        standby = running.standbys()[0]
        answer = requests.post(running.url(standby) + "/v1/secret/data/r", json={"data": {"v": "1"}},
                               headers={"X-Vault-Token": running.token}, allow_redirects=False)
        assert answer.status_code == 307
        vault = hvac.Client(url=running.url(standby), token=running.token)
        assert vault.secrets.kv.v2.create_or_update_secret("r", {"v": "2"})["data"]["version"] == 1
    finally:
        running.devcluster.close()


def test_read_your_writes_on_a_standby_with_x_vault_index(cluster):
    leader, standby = cluster.leader, cluster.standbys()[1]
    headers = {"X-Vault-Token": cluster.token}
    for round_number in range(20):
        written = requests.post(cluster.url(leader) + "/v1/secret/data/ryw", json={"data": {"n": round_number}},
                                headers=headers)
        assert written.status_code == 200
        read = requests.get(cluster.url(standby) + "/v1/secret/data/ryw",
                            headers={**headers, "X-Vault-Index": written.headers["X-Vault-Index"]})
        assert read.status_code == 200 and read.json()["data"]["data"] == {"n": round_number}


def test_an_index_the_standby_does_not_have_is_412_or_forwarded_on_request(cluster):
    standby = cluster.standbys()[0]
    headers = {"X-Vault-Token": cluster.token}
    written = requests.post(cluster.url(cluster.leader) + "/v1/secret/data/future", json={"data": {"v": 1}},
                            headers=headers)
    future = str(int(written.headers["X-Vault-Index"]) + 1_000_000)
    refused = requests.get(cluster.url(standby) + "/v1/secret/data/future",
                           headers={**headers, "X-Vault-Index": future})
    assert refused.status_code == 412
    assert refused.json() == {"errors": ["required index state not present"]}
    forwarded = requests.get(cluster.url(standby) + "/v1/secret/data/future", headers={
        **headers, "X-Vault-Index": future, "X-Vault-Inconsistent": "forward-active-node"})
    assert forwarded.status_code == 200 and forwarded.json()["data"]["data"] == {"v": 1}


def test_health_and_leader_report_roles_and_raft_indexes(cluster):
    leader_status = requests.get(cluster.url(cluster.leader) + "/v1/sys/leader").json()
    assert leader_status["ha_enabled"] and leader_status["is_self"]
    assert leader_status["raft_committed_index"] >= leader_status["raft_applied_index"] > 0
    for standby in cluster.standbys():
        assert requests.get(cluster.url(standby) + "/v1/sys/health").status_code == 473
        assert requests.get(cluster.url(standby) + "/v1/sys/health?perfstandbyok=true").status_code in (200, 473)
        status = requests.get(cluster.url(standby) + "/v1/sys/leader").json()
        assert status["is_self"] is False and status["performance_standby"] is True
        assert status["leader_address"] == cluster.url(cluster.leader)
    assert requests.get(cluster.url(cluster.leader) + "/v1/sys/health").status_code == 200


def test_a_standby_sees_the_leaders_mount_policy_and_key_rotation(cluster):
    leader, standby = cluster.leader, cluster.standbys()[0]
    root = client(cluster, leader)
    root.sys.enable_secrets_engine("kv", path="team", options={"version": "2"})
    root.sys.create_or_update_policy("reader", 'path "team/data/*" { capabilities = ["read"] }')
    token = root.auth.token.create(policies=["reader"], ttl="1h")["auth"]["client_token"]
    root.sys.rotate_encryption_key()
    written = requests.post(cluster.url(leader) + "/v1/team/data/app", json={"data": {"k": "v"}},
                            headers={"X-Vault-Token": cluster.token})
    index = {"X-Vault-Index": written.headers["X-Vault-Index"]}
    read = requests.get(cluster.url(standby) + "/v1/team/data/app", headers={"X-Vault-Token": token, **index})
    assert read.status_code == 200 and read.json()["data"]["data"] == {"k": "v"}  # new mount, new key term
    root.sys.create_or_update_policy("reader", 'path "team/data/other" { capabilities = ["read"] }')
    marker = requests.post(cluster.url(leader) + "/v1/team/data/marker", json={"data": {}},
                           headers={"X-Vault-Token": cluster.token})
    denied = requests.get(cluster.url(standby) + "/v1/team/data/app",
                          headers={"X-Vault-Token": token, "X-Vault-Index": marker.headers["X-Vault-Index"]})
    assert denied.status_code == 403  # the standby dropped its cached policy


def test_step_down_hands_leadership_to_another_node(cluster):
    before = cluster.leader
    answer = requests.put(cluster.url(cluster.standbys()[0]) + "/v1/sys/step-down",
                          headers={"X-Vault-Token": cluster.token})  # forwarded to the active node
    assert answer.status_code == 204, answer.text
    after = cluster.refresh_leader()
    assert after != before
    vault = client(cluster, before)
    assert vault.secrets.kv.v2.create_or_update_secret("after-step-down", {"v": 1})["data"]["version"] == 1


def test_a_single_node_config_is_a_one_member_cluster(tmp_path):
    config = write_config(tmp_path, nodes=1)
    with DevCluster(config, log_dir=tmp_path / "logs") as devcluster:
        devcluster.start()
        devcluster.initialize()
        devcluster.unseal()
        assert devcluster.wait_healthy() == "n1"
        status = devcluster.request("n1", "GET", "/v1/sys/leader").json()
        assert status["is_self"] and status["leader_address"] == devcluster.api_url("n1")


def test_a_sealed_leader_hands_leadership_to_an_unsealed_node(cluster):
    before = cluster.leader
    sealed = requests.put(cluster.url(before) + "/v1/sys/seal", headers={"X-Vault-Token": cluster.token})
    assert sealed.status_code == 204
    assert requests.get(cluster.url(before) + "/v1/sys/health").status_code == 503
    after = cluster.refresh_leader()  # health 200 and is_self: an unsealed node
    assert after != before
    vault = client(cluster, [node for node in cluster.devcluster.bootstrap_ids if node not in (before, after)][0])
    assert vault.secrets.kv.v2.create_or_update_secret("after-seal", {"v": 1})["data"]["version"] == 1
