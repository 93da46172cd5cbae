"""hvac, the real Vault client, against a real vaultd process: init and unseal, KV v2 and v1, mounts,
policies and ACL enforcement, tokens, audit, and the error statuses hvac maps to exceptions."""

import hvac
import pytest
import requests


def client(node, token=None):
    return hvac.Client(url=node.url, token=token if token is not None else node.root_token)


def test_init_unseal_and_seal_through_hvac(fresh_server):
    vault = client(fresh_server, token="")
    assert vault.sys.is_initialized() is False
    assert requests.get(fresh_server.url + "/v1/sys/health").status_code == 501
    result = vault.sys.initialize(secret_shares=5, secret_threshold=3)
    assert len(result["keys"]) == 5 and len(result["keys_base64"]) == 5
    assert result["root_token"].startswith("hvs.")
    assert vault.sys.is_initialized() and vault.sys.is_sealed()
    assert requests.get(fresh_server.url + "/v1/sys/health").status_code == 503
    with pytest.raises(hvac.exceptions.InvalidRequest, match="already initialized"):
        vault.sys.initialize(secret_shares=5, secret_threshold=3)
    status = vault.sys.submit_unseal_key(result["keys"][0])
    assert (status["sealed"], status["progress"], status["t"], status["n"]) == (True, 1, 3, 5)
    assert vault.sys.submit_unseal_key(reset=True)["progress"] == 0
    status = vault.sys.submit_unseal_keys(result["keys"][1:4])
    assert status["sealed"] is False and status["type"] == "shamir"
    assert requests.get(fresh_server.url + "/v1/sys/health").status_code == 200
    vault.token = result["root_token"]
    vault.sys.seal()
    assert vault.sys.is_sealed()
    with pytest.raises(hvac.exceptions.VaultDown):
        vault.secrets.kv.v2.read_secret_version(path="x", mount_point="secret")


def test_wrong_unseal_keys_reset_progress_and_leave_it_sealed(fresh_server):
    vault = client(fresh_server, token="")
    result = vault.sys.initialize(secret_shares=3, secret_threshold=2)
    other = bytes(33).hex()
    vault.sys.submit_unseal_key(result["keys"][0])
    with pytest.raises(hvac.exceptions.InvalidRequest, match="invalid key"):
        vault.sys.submit_unseal_key(other)
    status = vault.sys.read_seal_status()
    assert (status["sealed"], status["progress"]) == (True, 0)
    with pytest.raises(hvac.exceptions.InvalidRequest, match="valid hex or base64"):
        vault.sys.submit_unseal_key("not a key!")


def test_kv_v2_versions_cas_delete_undelete_destroy(dev_server):
    kv = client(dev_server).secrets.kv.v2
    assert kv.create_or_update_secret(path="app/db", secret={"password": "one"})["data"]["version"] == 1
    kv.create_or_update_secret(path="app/db", secret={"password": "two"}, cas=1)
    with pytest.raises(hvac.exceptions.InvalidRequest, match="check-and-set parameter did not match"):
        kv.create_or_update_secret(path="app/db", secret={"password": "three"}, cas=1)
    assert kv.read_secret_version(path="app/db", raise_on_deleted_version=True)["data"]["data"] == {"password": "two"}
    assert kv.read_secret_version(path="app/db", version=1, raise_on_deleted_version=True)["data"]["data"] == {
        "password": "one"}
    kv.delete_latest_version_of_secret(path="app/db")
    deleted = kv.read_secret_version(path="app/db", raise_on_deleted_version=False)
    assert deleted["data"]["data"] is None and deleted["data"]["metadata"]["deletion_time"] != ""
    kv.undelete_secret_versions(path="app/db", versions=[2])
    assert kv.read_secret_version(path="app/db", raise_on_deleted_version=True)["data"]["data"] == {"password": "two"}
    kv.destroy_secret_versions(path="app/db", versions=[1])
    metadata = kv.read_secret_metadata(path="app/db")["data"]
    assert metadata["versions"]["1"]["destroyed"] is True and metadata["current_version"] == 2
    kv.create_or_update_secret(path="app/cache", secret={"k": "v"})
    kv.create_or_update_secret(path="app/deep/x", secret={"k": "v"})
    assert kv.list_secrets(path="app")["data"]["keys"] == ["cache", "db", "deep/"]
    kv.delete_metadata_and_all_versions(path="app/db")
    with pytest.raises(hvac.exceptions.InvalidPath):
        kv.read_secret_version(path="app/db", raise_on_deleted_version=True)


def test_mounts_and_kv_v1(dev_server):
    vault = client(dev_server)
    vault.sys.enable_secrets_engine("kv", path="team", options={"version": "1"}, description="team secrets")
    mounts = vault.sys.list_mounted_secrets_engines()["data"]
    assert mounts["team/"]["type"] == "kv" and mounts["team/"]["options"] == {"version": "1"}
    assert mounts["secret/"]["options"] == {"version": "2"}
    with pytest.raises(hvac.exceptions.InvalidRequest, match="path is already in use"):
        vault.sys.enable_secrets_engine("kv", path="team")
    vault.secrets.kv.v1.create_or_update_secret(path="a/b", secret={"x": "1"}, mount_point="team")
    assert vault.secrets.kv.v1.read_secret(path="a/b", mount_point="team")["data"] == {"x": "1"}
    assert vault.secrets.kv.v1.list_secrets(path="a", mount_point="team")["data"]["keys"] == ["b"]
    vault.sys.disable_secrets_engine("team")
    assert "team/" not in vault.sys.list_mounted_secrets_engines()["data"]
    vault.sys.enable_secrets_engine("kv", path="team", options={"version": "1"})
    with pytest.raises(hvac.exceptions.InvalidPath):
        vault.secrets.kv.v1.read_secret(path="a/b", mount_point="team")


def test_policies_restrict_a_token(dev_server):
    vault = client(dev_server)
    vault.secrets.kv.v2.create_or_update_secret(path="app/db", secret={"password": "pw"})
    vault.sys.create_or_update_policy(
        name="app-reader", policy='path "secret/data/app/*" { capabilities = ["read"] }'
    )
    assert "app-reader" in vault.sys.list_policies()["data"]["policies"]
    token = vault.auth.token.create(policies=["app-reader"], ttl="1h")["auth"]["client_token"]
    reader = client(dev_server, token)
    assert reader.secrets.kv.v2.read_secret_version(path="app/db", raise_on_deleted_version=True)["data"]["data"]
    with pytest.raises(hvac.exceptions.Forbidden):
        reader.secrets.kv.v2.create_or_update_secret(path="app/db", secret={"password": "x"})
    with pytest.raises(hvac.exceptions.Forbidden):
        reader.sys.list_mounted_secrets_engines()
    caps = requests.post(dev_server.url + "/v1/sys/capabilities-self", headers={"X-Vault-Token": token},
                         json={"paths": ["secret/data/app/db", "sys/mounts"]}).json()["data"]
    assert caps == {"secret/data/app/db": ["read"], "sys/mounts": ["deny"]}
    with pytest.raises(hvac.exceptions.InvalidRequest, match='cannot update "root" policy'):
        vault.sys.create_or_update_policy(name="root", policy='path "*" { capabilities = ["read"] }')
    with pytest.raises(hvac.exceptions.InvalidRequest, match="failed to parse policy"):
        vault.sys.create_or_update_policy(name="broken", policy='path "x" { capabilities = ["fly"] }')
    vault.sys.delete_policy("app-reader")
    with pytest.raises(hvac.exceptions.Forbidden):
        reader.secrets.kv.v2.read_secret_version(path="app/db", raise_on_deleted_version=True)


def test_token_lifecycle(dev_server):
    vault = client(dev_server)
    vault.sys.create_or_update_policy(name="minter", policy='path "auth/token/create" { capabilities = ["update"] }')
    created = vault.auth.token.create(policies=["minter"], ttl="1h", renewable=True, display_name="ci",
                                      meta={"team": "platform"})["auth"]
    assert created["client_token"].startswith("hvs.") and len(created["accessor"]) == 24
    looked_up = vault.auth.token.lookup(created["client_token"])["data"]
    assert looked_up["display_name"] == "token-ci" and looked_up["meta"] == {"team": "platform"}
    assert vault.auth.token.lookup_accessor(created["accessor"])["data"]["id"] == ""
    renewed = vault.auth.token.renew(created["client_token"], increment="30m")["auth"]
    assert renewed["lease_duration"] <= 3600
    child = client(dev_server, created["client_token"]).auth.token.create(policies=["minter"])["auth"]
    vault.auth.token.revoke(created["client_token"])
    for token in (created["client_token"], child["client_token"]):
        with pytest.raises(hvac.exceptions.Forbidden):
            vault.auth.token.lookup(token)
    with pytest.raises(hvac.exceptions.Forbidden):
        client(dev_server, "hvs.not-a-token").lookup_token()


def test_error_statuses(dev_server):
    headers = {"X-Vault-Token": dev_server.root_token}
    url = dev_server.url
    malformed = requests.post(url + "/v1/secret/data/x", headers=headers, data=b"{not json")
    assert malformed.status_code == 400 and malformed.headers["Content-Type"] == "application/json"
    assert "error parsing JSON" in malformed.json()["errors"][0]
    too_big = requests.post(url + "/v1/secret/data/x", headers=headers, data=b" " * (3 * 1024 * 1024))
    assert too_big.status_code == 413
    assert requests.get(url + "/v1/nowhere/x", headers=headers).status_code == 404
    assert requests.get(url + "/v1/nowhere/x").status_code == 403  # ACL before routing
    assert requests.delete(url + "/v1/sys/init").status_code == 405
    assert requests.request("BREW", url + "/v1/secret/data/x", headers=headers).status_code == 405
    missing = requests.get(url + "/v1/secret/data/never", headers=headers)
    assert missing.status_code == 404 and missing.json() == {"errors": []}
    assert requests.get(url + "/not-v1").status_code == 404
    assert requests.get(url + "/v1/sys/health").headers["Cache-Control"] == "no-store"
    written = requests.post(url + "/v1/secret/data/y", headers=headers, json={"data": {"a": "b"}})
    assert written.status_code == 200 and set(written.json()) >= {"request_id", "data", "auth", "warnings"}
    assert requests.delete(url + "/v1/secret/data/y", headers=headers).status_code == 204
