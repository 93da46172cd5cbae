"""A secrets server's promises, checked against a real process: a known secret written through the API
appears nowhere in the data dir or the audit log (the log holds HMACs, and sys/audit-hash reproduces them),
and audit fails closed: when no device can write, the request is refused with 500 and never executed."""

import base64
import os
import pathlib

import hvac
import pytest
import requests

CANARY = "canary-Zq8vX2-do-not-leak"


def grep_tree(root: pathlib.Path, needles: list[bytes]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path}: {needle!r}" for needle in needles if needle in data]
    return hits


def test_a_known_secret_appears_nowhere_on_disk_or_in_the_audit_log(fresh_server, tmp_path):
    vault = hvac.Client(url=fresh_server.url)
    keys = vault.sys.initialize(secret_shares=1, secret_threshold=1)
    vault.sys.submit_unseal_key(keys["keys"][0])
    vault.token = keys["root_token"]
    audit_log = tmp_path / "audit.log"
    vault.sys.enable_audit_device("file", options={"file_path": str(audit_log)})
    vault.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
    vault.secrets.kv.v2.create_or_update_secret(path="app/db", secret={"password": CANARY})
    read = vault.secrets.kv.v2.read_secret_version(path="app/db", raise_on_deleted_version=True)
    assert read["data"]["data"]["password"] == CANARY
    needles = [CANARY.encode(), base64.b64encode(CANARY.encode()), keys["root_token"].encode()]
    assert grep_tree(fresh_server.data_dir, needles) == []
    log = audit_log.read_bytes()
    assert b'"type": "request"' in log and b'"type": "response"' in log
    assert [needle for needle in needles if needle in log] == []
    hashed = requests.post(fresh_server.url + "/v1/sys/audit-hash/file", json={"input": CANARY},
                           headers={"X-Vault-Token": keys["root_token"]}).json()["data"]["hash"]
    assert hashed.startswith("hmac-sha256:") and hashed.encode() in log


def test_audit_fails_closed(dev_server, tmp_path):
    vault = hvac.Client(url=dev_server.url, token=dev_server.root_token)
    audit_log = tmp_path / "audit.log"
    vault.sys.enable_audit_device("file", options={"file_path": str(audit_log)})
    vault.secrets.kv.v2.create_or_update_secret(path="app/x", secret={"v": "before"})
    os.unlink(audit_log)
    os.mkdir(audit_log)  # the device can no longer write: opening a directory for append fails
    with pytest.raises(hvac.exceptions.InternalServerError, match="internal error"):
        vault.secrets.kv.v2.create_or_update_secret(path="app/x", secret={"v": "after"})
    with pytest.raises(hvac.exceptions.InternalServerError):
        vault.secrets.kv.v2.read_secret_version(path="app/x", raise_on_deleted_version=True)
    os.rmdir(audit_log)
    kept = vault.secrets.kv.v2.read_secret_version(path="app/x", raise_on_deleted_version=True)
    assert kept["data"]["data"] == {"v": "before"} and kept["data"]["metadata"]["version"] == 1
    assert vault.sys.list_enabled_audit_devices()["data"]["file/"]["options"]["file_path"] == str(audit_log)
