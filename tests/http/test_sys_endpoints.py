"""The sys endpoints hvac and operators use, against a real process: health with every query parameter,
leader, key status and rotation, mount tuning and the UI mount lookup, LIST and ?list=true, and that a
sealed node answers 503 on every logical path while its status endpoints keep working."""

import hvac
import pytest
import requests


def test_health_query_parameters(fresh_server):
    url = fresh_server.url + "/v1/sys/health"
    assert requests.get(url).status_code == 501
    assert requests.get(url, params={"uninitcode": 299}).status_code == 299
    assert requests.head(url).status_code == 501 and requests.head(url).text == ""
    vault = hvac.Client(url=fresh_server.url)
    keys = vault.sys.initialize(secret_shares=1, secret_threshold=1)
    assert requests.get(url).status_code == 503
    assert requests.get(url, params={"sealedcode": 200}).status_code == 200
    body = requests.get(url).json()
    assert body["initialized"] is True and body["sealed"] is True and body["standby"] is False
    vault.sys.submit_unseal_key(keys["keys"][0])
    assert requests.get(url).status_code == 200
    assert requests.get(url, params={"activecode": 204}).status_code == 204
    assert requests.get(url, params={"standbyok": "true", "activecode": 200}).status_code == 200
    assert requests.get(url, params={"activecode": "abc"}).status_code == 400


def test_leader_key_status_and_rotation(dev_server):
    vault = hvac.Client(url=dev_server.url, token=dev_server.root_token)
    leader = requests.get(dev_server.url + "/v1/sys/leader").json()
    assert leader["ha_enabled"] is False and "leader_address" in leader
    before = vault.sys.get_encryption_key_status()["data"]
    vault.secrets.kv.v2.create_or_update_secret(path="before-rotate", secret={"v": "old term"})
    vault.sys.rotate_encryption_key()
    after = vault.sys.get_encryption_key_status()["data"]
    assert after["term"] == before["term"] + 1
    read = vault.secrets.kv.v2.read_secret_version(path="before-rotate", raise_on_deleted_version=True)
    assert read["data"]["data"] == {"v": "old term"}


def test_mount_tune_and_ui_mount_lookup(dev_server):
    vault = hvac.Client(url=dev_server.url, token=dev_server.root_token)
    vault.sys.tune_mount_configuration("secret", default_lease_ttl="1h", description="tuned")
    tune = vault.sys.read_mount_configuration("secret")["data"]
    assert tune["default_lease_ttl"] == 3600 and tune["description"] == "tuned"
    headers = {"X-Vault-Token": dev_server.root_token}
    ui = requests.get(dev_server.url + "/v1/sys/internal/ui/mounts/secret/data/x", headers=headers).json()
    assert ui["data"]["path"] == "secret/" and ui["data"]["options"] == {"version": "2"}
    assert requests.get(dev_server.url + "/v1/sys/internal/ui/mounts/secret/x").status_code == 403


def test_list_verb_and_list_query_agree(dev_server):
    headers = {"X-Vault-Token": dev_server.root_token}
    for name in ("a", "b/c"):
        requests.post(f"{dev_server.url}/v1/secret/data/{name}", headers=headers, json={"data": {"k": "v"}})
    by_verb = requests.request("LIST", dev_server.url + "/v1/secret/metadata", headers=headers).json()
    by_query = requests.get(dev_server.url + "/v1/secret/metadata/?list=true", headers=headers).json()
    assert by_verb["data"]["keys"] == by_query["data"]["keys"] == ["a", "b/"]


def test_a_sealed_node_answers_503_on_logical_paths(dev_server):
    vault = hvac.Client(url=dev_server.url, token=dev_server.root_token)
    vault.sys.seal()
    for path in ("/v1/secret/data/x", "/v1/sys/mounts", "/v1/auth/token/lookup-self", "/v1/nowhere"):
        response = requests.get(dev_server.url + path, headers={"X-Vault-Token": dev_server.root_token})
        assert (response.status_code, response.json()) == (503, {"errors": ["Vault is sealed"]}), path
    status = requests.get(dev_server.url + "/v1/sys/seal-status").json()
    assert status["sealed"] is True and status["type"] == "shamir" and status["t"] == 1
    with pytest.raises(hvac.exceptions.VaultDown):
        vault.sys.list_mounted_secrets_engines()


def test_metrics_from_a_real_node(dev_server):
    headers = {"X-Vault-Token": dev_server.root_token}
    requests.post(dev_server.url + "/v1/secret/data/m", headers=headers, json={"data": {"k": "v"}})
    response = requests.get(dev_server.url + "/v1/sys/metrics", params={"format": "prometheus"}, headers=headers)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
    text = response.text
    assert 'vault_core_handle_request_seconds_count{method="POST",path_class="secret/data"}' in text
    applies = [line for line in text.splitlines() if line.startswith("vaultd_storage_apply_seconds_count")]
    assert applies and float(applies[0].split()[-1]) >= 1
    assert "vault_core_unsealed 1.0" in text
    assert requests.get(dev_server.url + "/v1/sys/metrics").status_code == 403


def test_ui_mount_lookup_needs_a_grant_somewhere_under_the_mount(dev_server):
    vault = hvac.Client(url=dev_server.url, token=dev_server.root_token)
    vault.sys.create_or_update_policy(name="narrow", policy='path "secret/data/x/*" { capabilities = ["read"] }')
    vault.sys.create_or_update_policy(name="elsewhere", policy='path "other/*" { capabilities = ["read"] }')
    for policy, status in (("narrow", 200), ("elsewhere", 403)):
        token = vault.auth.token.create(policies=[policy])["auth"]["client_token"]
        response = requests.get(dev_server.url + "/v1/sys/internal/ui/mounts/secret/data/x/y",
                                headers={"X-Vault-Token": token})
        assert response.status_code == status, (policy, response.text)
