"""Bad input gets a clear 4xx and changes nothing: wrong types, malformed JSON, oversize bodies, unknown
mounts, wrong unseal keys. Each case snapshots the state it could touch and compares it afterwards."""

import pytest
import requests


def state(node):
    headers = {"X-Vault-Token": node.root_token}
    mounts = requests.get(node.url + "/v1/sys/mounts", headers=headers).json()["data"]
    policies = requests.get(node.url + "/v1/sys/policy", headers=headers).json()["data"]["policies"]
    secret = requests.get(node.url + "/v1/secret/data/app", headers=headers).json()
    return sorted(mounts), policies, secret.get("data")


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("POST", "sys/mounts/new", {"type": 123}, 400, "plugin not found"),  # weakly typed, as in Vault
        ("POST", "sys/mounts/new", {"type": "no-such-engine"}, 400, "plugin not found"),
        ("POST", "sys/mounts/new", {"type": "kv", "options": "v2"}, 400, "error converting input"),
        ("POST", "sys/mounts/secret", {"type": "kv"}, 400, "path is already in use"),
        ("POST", "sys/policy/p", {"policy": 42}, 400, "failed to parse policy"),
        ("POST", "sys/policy/p", {"policy": ["a"]}, 400, "error converting input"),
        ("POST", "sys/policy/p", {"policy": 'path "x" { capabilities = ["read"'}, 400, "failed to parse policy"),
        ("POST", "secret/data/app", {"data": "not a map"}, 400, ""),
        ("POST", "secret/data/app", {"data": {"k": "v2"}, "options": {"cas": 7}}, 400, "check-and-set"),
        ("POST", "auth/token/create", {"ttl": "soon"}, 400, ""),
        ("GET", "nosuchmount/x", None, 404, "no handler for route"),
    ],
)
def test_bad_requests_are_refused_and_change_nothing(dev_server, method, path, body, status, message):
    headers = {"X-Vault-Token": dev_server.root_token}
    requests.post(dev_server.url + "/v1/secret/data/app", headers=headers, json={"data": {"k": "v1"}})
    before = state(dev_server)
    response = requests.request(method, f"{dev_server.url}/v1/{path}", headers=headers, json=body)
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert message in " ".join(response.json()["errors"])
    assert state(dev_server) == before


def test_malformed_and_oversize_bodies_change_nothing(dev_server):
    headers = {"X-Vault-Token": dev_server.root_token}
    before = state(dev_server)
    for data in (b"{", b"[1, 2]", b'"just a string"', b"\xff\xfe"):
        response = requests.post(dev_server.url + "/v1/sys/mounts/x", headers=headers, data=data)
        assert response.status_code == 400 and "error parsing JSON" in response.json()["errors"][0]
    huge = b'{"data": {"k": "' + b"v" * (3 * 1024 * 1024) + b'"}}'
    assert requests.post(dev_server.url + "/v1/secret/data/app", headers=headers, data=huge).status_code == 413
    assert state(dev_server) == before


def test_wrong_unseal_keys_change_nothing(fresh_server):
    init = requests.put(fresh_server.url + "/v1/sys/init", json={"secret_shares": 3, "secret_threshold": 2}).json()
    for body, message in (({"key": "zz"}, "valid hex or base64"), ({}, "'key' must be specified"),
                          ({"key": 5}, "valid hex or base64")):
        response = requests.put(fresh_server.url + "/v1/sys/unseal", json=body)
        assert response.status_code == 400 and message in response.json()["errors"][0]
    status = requests.get(fresh_server.url + "/v1/sys/seal-status").json()
    assert (status["sealed"], status["progress"]) == (True, 0)
    for bad in ({"secret_shares": 0, "secret_threshold": 0}, {"secret_shares": 2, "secret_threshold": 3}):
        assert requests.put(fresh_server.url + "/v1/sys/init", json=bad).status_code == 400
    requests.put(fresh_server.url + "/v1/sys/unseal", json={"key": init["keys"][0]})
    requests.put(fresh_server.url + "/v1/sys/unseal", json={"key": init["keys"][1]})
    assert requests.get(fresh_server.url + "/v1/sys/seal-status").json()["sealed"] is False


def test_a_key_too_long_for_storage_is_a_400_and_writes_nothing(dev_server):
    headers = {"X-Vault-Token": dev_server.root_token}
    long_path = "secret/data/" + "k" * 4100
    response = requests.post(f"{dev_server.url}/v1/{long_path}", headers=headers, json={"data": {"a": "b"}})
    assert response.status_code == 400 and "over 4096" in response.json()["errors"][0]
    listed = requests.request("LIST", dev_server.url + "/v1/secret/metadata", headers=headers)
    assert listed.status_code == 404  # nothing was written, not even metadata
