"""`vaultd status`, `operator init`, `operator unseal -migrate` and `operator rekey -target=recovery` on an auto
seal (PKCS#11 through a real SoftHSM2 token) send and print what Vault's CLI does, and a Shamir seal keeps its
behaviour.

The pkcs11 tests start real one-node clusters with vaultd.devcluster (`write_config` + `DevCluster`, which gives
the node a SoftHSM2 store of its own through SOFTHSM2_CONF) and drive them with `vaultd.cli.main` in a subprocess,
as an operator's shell would: the CLI itself initialises the node, which then unseals itself
(`DevCluster.wait_unsealed`). What a command did is read back from later commands: `status` after init, a rekey
and a seal migration; the rekeyed recovery keys unsealing the node after `operator seal`; the stored secret and a
key-less restart after `operator unseal -migrate`. The Shamir test uses tests/http's `fresh_server`. The request
`operator init` sends (the 5/3 defaults go to the pair the seal takes) and its JSON are pinned against a stub
HTTP server in-process.
"""

import dataclasses
import io
import json
import os
import re
import time

import pytest

from tests.cli import test_cli_raft
from tests.cli.test_cli import ok, table, vaultd
from tests.http import conftest as http_fixtures
from vaultd import cli
from vaultd.devcluster import DevCluster, make_softhsm_token, pkcs11_seal_table, rewrite_seal_table, write_config

pytestmark = pytest.mark.timeout(240)
fresh_server = http_fixtures.fresh_server
stub = test_cli_raft.stub  # answers by (method, path), records each request
migration_timeout_seconds = 30.0  # the active node writes a finished migration shortly after the unseal
auto_unseal_timeout_seconds = 60.0

@dataclasses.dataclass
class Target:
    """What tests/cli/test_cli.py's `vaultd` needs of a node: its URL and the token to send."""

    url: str
    root_token: str = ""


def numbered(text: str, label: str) -> list[str]:
    """The values of `<label> 1: X`, `<label> 2: Y`, ... lines, checked to be numbered from 1."""
    found = [re.fullmatch(rf"{label} (\d+): (\S+)", line) for line in text.splitlines()]
    found = [match for match in found if match]
    assert [int(match.group(1)) for match in found] == list(range(1, len(found) + 1)), text
    return [match.group(2) for match in found]


def rekey_recovery(node: Target, keys: list[str], *flags: str) -> str:
    """Start a rekey of the recovery keys with `flags` and give `keys`; return the last command's output."""
    started = ok(node, "operator", "rekey", "-target=recovery", "-init", *flags, "-format=json").json()
    assert started["started"] is True and started["nonce"], started
    last = ""
    for key in keys:
        last = ok(node, "operator", "rekey", "-target=recovery", f"-nonce={started['nonce']}", key).out
    return last


def wait_migrated(node: Target) -> dict[str, str]:
    """`vaultd status` once it no longer reports a seal migration in progress."""
    deadline = time.monotonic() + migration_timeout_seconds
    while True:
        rows = table(ok(node, "status").out)
        if "Seal Migration in Progress" not in rows:
            return rows
        assert time.monotonic() < deadline, f"the migration is still in progress: {rows}"
        time.sleep(0.2)


# --- a PKCS#11 node ---------------------------------------------------------------------------------------------


def test_init_status_and_recovery_rekey_on_a_pkcs11_node(tmp_path):
    config = write_config(tmp_path, nodes=1, seal="pkcs11")
    with DevCluster(config, log_dir=tmp_path / "logs") as devcluster:
        devcluster.start()
        node = Target(devcluster.api_url("n1"))
        before = vaultd(node, "status")
        assert before.code == 2, before.err
        assert {key: table(before.out).get(key) for key in ("Seal Type", "Recovery Seal Type", "Initialized")} == {
            "Seal Type": "pkcs11", "Recovery Seal Type": "shamir", "Initialized": "false"}

        initialised = ok(node, "operator", "init", "-recovery-shares=3", "-recovery-threshold=2")
        recovery = numbered(initialised.out, "Recovery Key")
        assert len(recovery) == 3 and numbered(initialised.out, "Unseal Key") == []
        node.root_token = re.search(r"^Initial Root Token: (hvs\.\S+)$", initialised.out, re.MULTILINE).group(1)
        assert initialised.out.endswith(
            "\n\nSuccess! Vault is initialized\n\nRecovery key initialized with 3 key shares and a key threshold of 2. "
            "Please\nsecurely distribute the key shares printed above.\n")
        devcluster.wait_unsealed("n1", timeout=auto_unseal_timeout_seconds)  # nobody gave it a key

        rows = table(ok(node, "status").out)
        assert {key: rows.get(key) for key in ("Seal Type", "Recovery Seal Type", "Sealed", "Total Recovery Shares",
                                               "Threshold")} == {
            "Seal Type": "pkcs11", "Recovery Seal Type": "shamir", "Sealed": "false", "Total Recovery Shares": "3",
            "Threshold": "2"}
        assert not {"Total Shares", "Unseal Progress", "Seal Migration in Progress"} & set(rows)
        assert json.loads(ok(node, "status", "-format=json").out)["recovery_seal"] is True
        unseal_pair = vaultd(node, "operator", "init", "-key-shares=1", "-key-threshold=1")
        assert unseal_pair.code == 1
        assert "parameters secret_shares,secret_threshold not applicable to seal type pkcs11" in unseal_pair.err
        again = vaultd(node, "operator", "init", "-recovery-shares=3", "-recovery-threshold=2")
        assert again.code == 1 and "Vault is already initialized" in again.err

        barrier = vaultd(node, "operator", "rekey", "-init", "-key-shares=1", "-key-threshold=1")
        assert barrier.code == 1 and "rekey them with sys/rekey-recovery-key" in barrier.err
        recovery = check_recovery_rekey(node, recovery)

        ok(node, "operator", "seal")  # sealed by an operator, an auto seal takes recovery keys to unseal
        sealed = table(vaultd(node, "status").out)
        assert (sealed["Sealed"], sealed["Unseal Progress"]) == ("true", "0/2")
        for key in recovery:
            unsealed = table(ok(node, "operator", "unseal", key).out)
        assert unsealed["Sealed"] == "false" and "Unseal Progress" not in unsealed


def check_recovery_rekey(node: Target, recovery: list[str]) -> list[str]:
    """Rekey the 3/2 recovery keys to 4/2, then with verification to 2/2; return the final keys."""
    first = ok(node, "operator", "rekey", "-target=recovery", "-init", "-key-shares=4", "-key-threshold=2")
    nonce = table(first.out)["Nonce"]
    assert (table(first.out)["New Shares"], table(first.out)["Rekey Progress"]) == ("4", "0/2")
    ok(node, "operator", "rekey", "-target=recovery", f"-nonce={nonce}", recovery[0])
    assert table(ok(node, "operator", "rekey", "-target=recovery", "-status").out)["Rekey Progress"] == "1/2"
    done = ok(node, "operator", "rekey", "-target=recovery", f"-nonce={nonce}", recovery[1]).out
    four = numbered(done, "Key")
    assert len(four) == 4 and f"Operation nonce: {nonce}" in done
    assert "Vault recovery keys rekeyed with 4 key shares and a key threshold of 2." in done.replace("\n", " ")
    rows = table(ok(node, "status").out)
    assert (rows["Total Recovery Shares"], rows["Threshold"]) == ("4", "2")

    ok(node, "operator", "rekey", "-target=recovery", "-init", "-key-shares=3", "-key-threshold=3")
    canceled = ok(node, "operator", "rekey", "-target=recovery", "-cancel").out
    assert canceled.strip() == "Success! Canceled rekeying (if it was started)"
    assert table(ok(node, "operator", "rekey", "-target=recovery", "-status").out)["Started"] == "false"

    pending = rekey_recovery(node, four[:2], "-key-shares=2", "-key-threshold=2", "-verify")
    assert "Vault has created a new recovery key, split into 2 key shares and a key threshold of 2." in \
        pending.replace("\n", " ")
    two = numbered(pending, "Key")
    verification_nonce = re.search(r"^Verification nonce: (\S+)$", pending, re.MULTILINE).group(1)
    verifying = table(ok(node, "operator", "rekey", "-target=recovery", "-verify", "-status").out)
    assert (verifying["Verification Nonce"], verifying["Verification Progress"]) == (verification_nonce, "0/2")
    verified = ""
    for key in two:
        verified = ok(node, "operator", "rekey", "-target=recovery", "-verify", f"-nonce={verification_nonce}",
                      key).out
    assert verified.startswith("Success! Rekey verification was successful.")
    rows = table(ok(node, "status").out)
    assert (rows["Total Recovery Shares"], rows["Threshold"]) == ("2", "2")
    return two


# --- Shamir: what it was ----------------------------------------------------------------------------------------


def test_a_shamir_node_keeps_unseal_keys_and_refuses_recovery_flags(fresh_server):
    refused = vaultd(fresh_server, "operator", "init", "-recovery-shares=3", "-recovery-threshold=2")
    assert refused.code == 1
    assert "parameters recovery_shares,recovery_threshold not applicable to seal type shamir" in refused.err
    keys = ok(fresh_server, "operator", "init", "-format=json").json()  # Vault's defaults: 5 shares, threshold 3
    assert len(keys["unseal_keys_b64"]) == len(keys["unseal_keys_hex"]) == 5
    assert (keys["unseal_shares"], keys["unseal_threshold"]) == (5, 3)
    assert (keys["recovery_keys_b64"], keys["recovery_keys_shares"], keys["recovery_keys_threshold"]) == ([], 0, 0)
    fresh_server.root_token = keys["root_token"]
    rows = table(vaultd(fresh_server, "status").out)
    assert {key: rows.get(key) for key in ("Seal Type", "Total Shares", "Threshold", "Unseal Progress")} == {
        "Seal Type": "shamir", "Total Shares": "5", "Threshold": "3", "Unseal Progress": "0/3"}
    assert not {"Recovery Seal Type", "Total Recovery Shares", "Seal Migration in Progress"} & set(rows)
    for key in keys["unseal_keys_b64"][:3]:
        unsealed = table(ok(fresh_server, "operator", "unseal", key).out)
    assert unsealed["Sealed"] == "false" and "Unseal Progress" not in unsealed and "Unseal Nonce" not in unsealed

    recovery = vaultd(fresh_server, "operator", "rekey", "-target=recovery", "-status")
    assert recovery.code == 1 and "recovery keys are not supported by seal type shamir" in recovery.err
    assert table(ok(fresh_server, "operator", "rekey", "-target=barrier", "-status").out)["Started"] == "false"
    unknown = vaultd(fresh_server, "operator", "rekey", "-target=nope", "-status")
    assert unknown.code == 2 and "Error: Unknown target: nope" in unknown.err


# --- Shamir -> PKCS#11 by `operator unseal -migrate` ------------------------------------------------------------


def test_operator_unseal_migrate_moves_a_shamir_node_to_pkcs11(tmp_path):
    config = write_config(tmp_path, nodes=1)  # Shamir
    devcluster = DevCluster(config, log_dir=tmp_path / "logs")
    try:
        devcluster.start()
        node = Target(devcluster.api_url("n1"))
        keys = ok(node, "operator", "init", "-key-shares=1", "-key-threshold=1", "-format=json").json()
        share, node.root_token = keys["unseal_keys_b64"][0], keys["root_token"]
        ok(node, "operator", "unseal", share)
        devcluster.wait_healthy(timeout=60)
        ok(node, "secrets", "enable", "-path=secret", "kv-v2")
        ok(node, "kv", "put", "secret/app", "v=kept")
        devcluster.close()

        make_softhsm_token(tmp_path)
        rewrite_seal_table(config, pkcs11_seal_table())
        devcluster = DevCluster(config, log_dir=tmp_path / "logs")  # re-reads the config: SOFTHSM2_CONF is set
        devcluster.start()
        pending = vaultd(node, "status")
        assert pending.code == 2, pending.err
        rows = table(pending.out)
        assert {key: rows.get(key) for key in ("Seal Type", "Sealed", "Unseal Progress",
                                               "Seal Migration in Progress")} == {
            "Seal Type": "pkcs11", "Sealed": "true", "Unseal Progress": "0/1", "Seal Migration in Progress": "true"}
        plain = vaultd(node, "operator", "unseal", share)
        assert plain.code == 1 and "migrate option not provided and seal migration is pending" in plain.err

        migrated = table(ok(node, "operator", "unseal", "-migrate", share).out)
        assert migrated["Sealed"] == "false"
        rows = wait_migrated(node)
        assert {key: rows.get(key) for key in ("Seal Type", "Recovery Seal Type", "Sealed", "Total Recovery Shares",
                                               "Threshold")} == {
            "Seal Type": "pkcs11", "Recovery Seal Type": "shamir", "Sealed": "false", "Total Recovery Shares": "1",
            "Threshold": "1"}
        assert ok(node, "kv", "get", "-field=v", "secret/app").out.strip() == "kept"

        devcluster.close()  # a restart: the node now unseals itself, with no share given
        devcluster = DevCluster(config, log_dir=tmp_path / "logs")
        devcluster.start()
        devcluster.wait_unsealed("n1", timeout=auto_unseal_timeout_seconds)
        rows = table(ok(node, "status").out)
        assert (rows["Seal Type"], rows["Sealed"]) == ("pkcs11", "false")
        assert "Seal Migration in Progress" not in rows
        assert ok(node, "kv", "get", "-field=v", "secret/app").out.strip() == "kept"
    finally:
        devcluster.close()


# --- what `operator init` sends and prints, against a stub ------------------------------------------------------


def run_init(stub, seal_status: dict, reply: dict, *args: str) -> tuple[int, str, str, dict]:
    stub.answers[("GET", "/v1/sys/seal-status")] = (200, {}, seal_status)
    stub.answers[("PUT", "/v1/sys/init")] = (200, {}, reply)
    out, err = io.StringIO(), io.StringIO()
    environ = {"VAULT_ADDR": stub.address, "HOME": os.devnull}
    code = cli.main(["operator", "init", *args], environ=environ, stdin=io.StringIO(), stdout=out, stderr=err)
    sent = [json.loads(body) for method, path, _, body in stub.seen if (method, path) == ("PUT", "/v1/sys/init")]
    assert len(sent) == 1, stub.seen
    return code, out.getvalue(), err.getvalue(), sent[0]


pkcs11_status = {"type": "pkcs11", "recovery_seal": True, "recovery_seal_type": "shamir", "initialized": False,
                 "sealed": True, "t": 0, "n": 0, "progress": 0, "nonce": "", "migration": False}
pkcs11_reply = {"keys": [], "keys_base64": [], "recovery_keys": ["aa", "bb"],
                "recovery_keys_base64": ["qg==", "uw=="], "root_token": "hvs.root"}


def test_init_defaults_the_pair_the_seal_takes_and_prints_vaults_json(stub):
    code, out, _, sent = run_init(stub, pkcs11_status, pkcs11_reply, "-format=json")
    assert code == 0
    assert sent == {"secret_shares": 0, "secret_threshold": 0, "recovery_shares": 5, "recovery_threshold": 3}
    assert json.loads(out) == {
        "unseal_keys_b64": [], "unseal_keys_hex": [], "unseal_shares": 1, "unseal_threshold": 1,
        "recovery_keys_b64": ["qg==", "uw=="], "recovery_keys_hex": ["aa", "bb"], "recovery_keys_shares": 5,
        "recovery_keys_threshold": 3, "root_token": "hvs.root"}

    stub.seen.clear()
    shamir_status = {**pkcs11_status, "type": "shamir", "recovery_seal": False}
    shamir_reply = {"keys": ["aa"], "keys_base64": ["qg=="], "root_token": "hvs.root"}
    code, out, _, sent = run_init(stub, shamir_status, shamir_reply, "-key-shares=1", "-key-threshold=1")
    assert code == 0
    assert sent == {"secret_shares": 1, "secret_threshold": 1, "recovery_shares": 0, "recovery_threshold": 0}
    assert out.startswith("Unseal Key 1: qg==\n\nInitial Root Token: hvs.root\n\nVault initialized with 1 key shares")
    assert "Recovery" not in out


def test_init_on_an_auto_seal_prints_vaults_text(stub):
    code, out, _, sent = run_init(stub, pkcs11_status, pkcs11_reply, "-recovery-shares=2", "-recovery-threshold=1")
    assert code == 0 and (sent["recovery_shares"], sent["recovery_threshold"]) == (2, 1)
    assert out == (
        "Recovery Key 1: qg==\nRecovery Key 2: uw==\n\nInitial Root Token: hvs.root\n\n"
        "Success! Vault is initialized\n\n"
        "Recovery key initialized with 2 key shares and a key threshold of 1. Please\n"
        "securely distribute the key shares printed above.\n")
