"""More of the API through hvac against a real process: the token self-service and accessor endpoints,
revoke-orphan, auth mount listing, audit device list/disable, KV v2 config and metadata updates."""

import hvac
import pytest


def test_token_self_service_and_accessor_endpoints(dev_server):
    root = hvac.Client(url=dev_server.url, token=dev_server.root_token)
    root.sys.create_or_update_policy(name="minter", policy='path "auth/token/create" { capabilities = ["update"] }')
    parent = root.auth.token.create(policies=["minter"], ttl="1h")["auth"]
    me = hvac.Client(url=dev_server.url, token=parent["client_token"])
    assert me.auth.token.lookup_self()["data"]["accessor"] == parent["accessor"]
    assert me.auth.token.renew_self(increment="10m")["auth"]["lease_duration"] <= 3600
    child = me.auth.token.create(policies=["minter"])["auth"]
    root.auth.token.revoke_and_orphan_children(parent["client_token"])
    with pytest.raises(hvac.exceptions.Forbidden):
        me.auth.token.lookup_self()
    orphan = root.auth.token.lookup(child["client_token"])["data"]
    assert orphan["orphan"] is True
    root.auth.token.revoke_accessor(child["accessor"])
    with pytest.raises(hvac.exceptions.Forbidden):
        root.auth.token.lookup(child["client_token"])
    other = root.auth.token.create(policies=["default"])["auth"]
    hvac.Client(url=dev_server.url, token=other["client_token"]).auth.token.revoke_self()
    with pytest.raises(hvac.exceptions.Forbidden):
        root.auth.token.lookup(other["client_token"])


def test_auth_mounts_and_audit_devices(dev_server, tmp_path):
    vault = hvac.Client(url=dev_server.url, token=dev_server.root_token)
    auth = vault.sys.list_auth_methods()["data"]
    assert auth["token/"]["type"] == "token"
    with pytest.raises(hvac.exceptions.InvalidRequest, match="token credential backend cannot be instantiated"):
        vault.sys.enable_auth_method("token", path="token2")
    vault.sys.enable_audit_device("file", path="one", options={"file_path": str(tmp_path / "one.log")})
    assert vault.sys.list_enabled_audit_devices()["data"]["one/"]["type"] == "file"
    vault.sys.disable_audit_device("one")
    assert "one/" not in vault.sys.list_enabled_audit_devices()["data"]
    size = (tmp_path / "one.log").stat().st_size
    vault.secrets.kv.v2.create_or_update_secret(path="after-disable", secret={"k": "v"})
    assert (tmp_path / "one.log").stat().st_size == size


def test_kv_v2_config_and_metadata_updates(dev_server):
    kv = hvac.Client(url=dev_server.url, token=dev_server.root_token).secrets.kv.v2
    kv.configure(max_versions=2, cas_required=False)
    assert kv.read_configuration()["data"]["max_versions"] == 2
    for value in ("a", "b", "c"):
        kv.create_or_update_secret(path="trim", secret={"v": value})
    versions = kv.read_secret_metadata(path="trim")["data"]["versions"]
    assert sorted(versions) == ["2", "3"]
    kv.update_metadata(path="trim", cas_required=True, custom_metadata={"owner": "platform"})
    metadata = kv.read_secret_metadata(path="trim")["data"]
    assert metadata["cas_required"] is True and metadata["custom_metadata"] == {"owner": "platform"}
    with pytest.raises(hvac.exceptions.InvalidRequest, match="check-and-set parameter required"):
        kv.create_or_update_secret(path="trim", secret={"v": "d"})
    kv.create_or_update_secret(path="trim", secret={"v": "d"}, cas=3)
    assert kv.read_secret_version(path="trim", raise_on_deleted_version=True)["data"]["data"] == {"v": "d"}
