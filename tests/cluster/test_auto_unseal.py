"""PKCS#11 auto-unseal through a real SoftHSM2 token, on real clusters: every node unseals by itself after
kill -9, recovery keys authorise generate-root and their own rekey, HSM faults leave a node sealed (503) until
the HSM is back, and a running cluster migrates Shamir -> PKCS#11 -> Shamir with its data intact."""

import pathlib
import re
import shutil
import time

import hvac
import requests

from vaultd.devcluster import (
    DevCluster,
    hsm_key_label,
    make_softhsm_token,
    pkcs11_seal_table,
    rewrite_seal_table,
    softhsm_lib,
)

from .conftest import start_cluster


def put(running, devcluster, key: str, value: str, node: str | None = None) -> str:
    answer = devcluster.request(node or running, "POST", f"/v1/secret/data/{key}", {"data": {"v": value}},
                                token=devcluster.root_token)
    assert answer.status == 200, answer.text()
    return answer.headers["X-Vault-Index"]


def get(devcluster, node: str, key: str, index: str = "0"):
    answer = devcluster.request(node, "GET", f"/v1/secret/data/{key}", token=devcluster.root_token,
                                headers={"X-Vault-Index": index})
    return answer.json()["data"]["data"]["v"] if answer.status == 200 else answer.status


def test_every_node_unseals_itself_after_kill_9_of_the_whole_cluster(tmp_path):
    running = start_cluster(tmp_path, seal="pkcs11")
    devcluster = running.devcluster
    try:
        status = devcluster.request(running.leader, "GET", "/v1/sys/seal-status").json()
        assert (status["type"], status["recovery_seal"], status["sealed"]) == ("pkcs11", True, False)
        index = put(running.leader, devcluster, "durable", "yes")
        for node in devcluster.bootstrap_ids:
            devcluster.kill(node)
        devcluster.start()
        leader = devcluster.wait_healthy(timeout=60)  # nobody submitted a key
        for node in devcluster.bootstrap_ids:
            assert get(devcluster, node, "durable", index) == "yes"
        assert leader in devcluster.bootstrap_ids
    finally:
        devcluster.close()


def test_recovery_keys_authorise_generate_root_and_their_own_rekey(tmp_path):
    running = start_cluster(tmp_path, seal="pkcs11")
    devcluster = running.devcluster
    try:
        vault = hvac.Client(url=running.url(running.leader), token=running.token)
        recovery = devcluster.init_result["recovery_keys"]
        attempt = vault.sys.start_root_token_generation()
        result = vault.sys.generate_root(key=recovery[0], nonce=attempt["nonce"])
        assert result["complete"] is True and result["encoded_token"]
        refused = requests.put(running.url(running.leader) + "/v1/sys/rekey/init",
                               json={"secret_shares": 1, "secret_threshold": 1})
        assert refused.status_code == 400 and "rekey-recovery-key" in refused.text
        started = requests.put(running.url(running.leader) + "/v1/sys/rekey-recovery-key/init",
                               json={"secret_shares": 3, "secret_threshold": 2}).json()
        rekeyed = requests.put(running.url(running.leader) + "/v1/sys/rekey-recovery-key/update",
                               json={"key": recovery[0], "nonce": started["nonce"]}).json()
        assert rekeyed["complete"] is True and len(rekeyed["keys"]) == 3
        status = requests.get(running.url(running.leader) + "/v1/sys/seal-status").json()
        assert (status["t"], status["n"]) == (2, 3)
    finally:
        devcluster.close()


def one_node(tmp_path) -> DevCluster:
    running = start_cluster(tmp_path, nodes=1, seal="pkcs11")
    return running.devcluster


def wait_for_log(devcluster, node: str, pattern: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, devcluster.log_path(node).read_text())
        if found:
            return found.group(0)
        time.sleep(0.1)
    raise AssertionError(f"no log line matching {pattern!r}:\n{devcluster.log_tail(node)}")


def sealed_then_back(devcluster, tmp_path, break_it, restore, cause: str) -> None:
    """Stop the node, break the HSM, start: sealed, 503, the cause logged, no data touched; restore: unsealed."""
    devcluster.stop("n1")
    log = devcluster.log_path("n1")
    log.write_text("")
    break_it()
    devcluster.start("n1")
    line = wait_for_log(devcluster, "n1", r"auto-unseal failed, node stays sealed: .*")
    assert cause in line, line
    assert devcluster.health_status("n1") == 503
    restore()
    devcluster.wait_unsealed("n1", timeout=60)  # the retry loop picks it up: no restart
    assert get(devcluster, "n1", "kept") == "yes"


def test_hsm_faults_leave_the_node_sealed_and_it_unseals_when_the_hsm_is_back(tmp_path):
    devcluster = one_node(tmp_path)
    try:
        put("n1", devcluster, "kept", "yes")
        pin_file = tmp_path / "data" / "hsm.pin"
        good_pin = pin_file.read_text()
        sealed_then_back(devcluster, tmp_path, lambda: pin_file.write_text("0000\n"),
                         lambda: pin_file.write_text(good_pin), "pin")
        token_dir, moved = tmp_path / "data" / "softhsm", tmp_path / "softhsm-away"
        sealed_then_back(devcluster, tmp_path, lambda: token_dir.rename(moved), lambda: moved.rename(token_dir),
                         "token")
        backup = tmp_path / "softhsm-backup"
        sealed_then_back(devcluster, tmp_path, lambda: delete_key(token_dir, backup),
                         lambda: restore_dir(backup, token_dir), hsm_key_label)
    finally:
        devcluster.close()


def test_a_missing_library_leaves_the_node_sealed_until_it_is_installed(tmp_path):
    devcluster = one_node(tmp_path)
    try:
        put("n1", devcluster, "kept", "yes")
        link = tmp_path / "lib" / "libsofthsm2.so"
        link.parent.mkdir()
        config = tmp_path / "cluster.toml"
        devcluster.stop("n1")
        config.write_text(config.read_text().replace(f'lib = "{softhsm_lib}"', f'lib = "{link}"'))
        devcluster.log_path("n1").write_text("")
        devcluster.start("n1")
        assert "libsofthsm2.so" in wait_for_log(devcluster, "n1", r"auto-unseal failed, node stays sealed: .*")
        assert devcluster.health_status("n1") == 503
        link.symlink_to(softhsm_lib)
        devcluster.wait_unsealed("n1", timeout=60)
        assert get(devcluster, "n1", "kept") == "yes"
    finally:
        devcluster.close()


def delete_key(token_dir: pathlib.Path, backup: pathlib.Path) -> None:
    """Keep a copy of the token, then destroy the unseal key in it: SoftHSM2 keeps each object in a file of its
    own beside the token's `token.object`."""
    shutil.copytree(token_dir, backup)
    objects = [path for path in token_dir.rglob("*.object") if path.name != "token.object"]
    assert objects, "the token holds no key object"
    for key_file in objects:
        key_file.unlink()


def restore_dir(backup: pathlib.Path, target: pathlib.Path) -> None:
    shutil.rmtree(target)
    shutil.copytree(backup, target)


def wait_until_migrated(devcluster: DevCluster, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        statuses = [devcluster.request(node, "GET", "/v1/sys/seal-status").json()["migration"]
                    for node in devcluster.bootstrap_ids]
        if not any(statuses):
            return
        assert time.monotonic() < deadline, f"a migration is still pending: {statuses}"
        time.sleep(0.1)


def migrate(devcluster: DevCluster, node: str, keys: list[str], threshold: int) -> dict:
    answer = None
    for key in keys[:threshold]:
        answer = devcluster.request(node, "PUT", "/v1/sys/unseal", {"key": key, "migrate": True})
        assert answer.status == 200, answer.text()
    return answer.json()


def restarted(tmp_path, devcluster: DevCluster) -> DevCluster:
    """Every node stopped, then started again from the (rewritten) config. Across a migration the same shares
    are the unseal keys of the Shamir seal and the recovery keys of the pkcs11 one."""
    shares = devcluster.init_result.get("keys") or devcluster.init_result["recovery_keys"]
    init = {"keys": shares, "recovery_keys": shares, "root_token": devcluster.root_token}
    devcluster.close()
    again = DevCluster(tmp_path / "cluster.toml", log_dir=tmp_path / "logs")
    again.set_init_result(init)
    again.start()
    return again


def test_a_running_cluster_migrates_shamir_to_pkcs11_and_back_with_its_data(tmp_path):
    running = start_cluster(tmp_path)  # Shamir, one share
    devcluster = running.devcluster
    try:
        index = put(running.leader, devcluster, "migrated", "intact")
        shares = list(devcluster.keys)
        make_softhsm_token(tmp_path)
        rewrite_seal_table(tmp_path / "cluster.toml", pkcs11_seal_table())
        devcluster = restarted(tmp_path, devcluster)
        for node in devcluster.bootstrap_ids:
            status = devcluster.request(node, "GET", "/v1/sys/seal-status").json()
            assert status["migration"] is True and status["sealed"] is True
            plain = devcluster.request(node, "PUT", "/v1/sys/unseal", {"key": shares[0]})
            assert plain.status == 400 and "migration is pending" in plain.text()
        for node in devcluster.bootstrap_ids:
            assert migrate(devcluster, node, shares, 1)["sealed"] is False
        devcluster.wait_healthy(timeout=60)
        wait_until_migrated(devcluster)  # the node that is active writes the migration
        devcluster = restarted(tmp_path, devcluster)  # now every node unseals by itself
        leader = devcluster.wait_healthy(timeout=60)
        assert get(devcluster, leader, "migrated", index) == "intact"

        rewrite_seal_table(tmp_path / "cluster.toml", pkcs11_seal_table(disabled=True))
        devcluster = restarted(tmp_path, devcluster)
        for node in devcluster.bootstrap_ids:  # the old unseal share is the recovery share now
            assert migrate(devcluster, node, shares, 1)["sealed"] is False
        devcluster.wait_healthy(timeout=60)
        wait_until_migrated(devcluster)
        rewrite_seal_table(tmp_path / "cluster.toml", '[seal]\ntype = "shamir"')
        devcluster = restarted(tmp_path, devcluster)
        devcluster.unseal()
        leader = devcluster.wait_healthy(timeout=60)
        status = devcluster.request(leader, "GET", "/v1/sys/seal-status").json()
        assert (status["type"], status["recovery_seal"]) == ("shamir", False)
        for node in devcluster.bootstrap_ids:
            assert get(devcluster, node, "migrated", index) == "intact"
    finally:
        devcluster.close()
