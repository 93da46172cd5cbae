"""Response wrapping against a real process: any response wrapped by X-Vault-Wrap-TTL, sys/wrapping/wrap,
unwrap (once only, by body or by the wrapping token itself), lookup and rewrap, and a bad TTL refused."""

import hvac
import pytest
import requests


def wrapped_read(node, path, ttl="60s"):
    response = requests.get(f"{node.url}/v1/{path}", headers={"X-Vault-Token": node.root_token,
                                                              "X-Vault-Wrap-TTL": ttl})
    assert response.status_code == 200, response.text
    return response.json()


def test_a_wrapped_response_unwraps_once(dev_server):
    vault = hvac.Client(url=dev_server.url, token=dev_server.root_token)
    vault.secrets.kv.v2.create_or_update_secret(path="w", secret={"password": "wrapped"})
    body = wrapped_read(dev_server, "secret/data/w")
    assert body["data"] is None and body["request_id"] == ""
    info = body["wrap_info"]
    assert info["ttl"] == 60 and info["creation_path"] == "secret/data/w" and info["token"].startswith("hvs.")
    unwrapped = vault.sys.unwrap(info["token"])
    assert unwrapped["data"]["data"] == {"password": "wrapped"}
    with pytest.raises(hvac.exceptions.InvalidRequest, match="wrapping token is not valid or does not exist"):
        vault.sys.unwrap(info["token"])


def test_wrap_lookup_rewrap_and_unwrap_with_the_wrapping_token_itself(dev_server):
    vault = hvac.Client(url=dev_server.url, token=dev_server.root_token)
    info = vault.sys.wrap(payload={"handed": "over"}, ttl="120s")["wrap_info"]
    looked_up = requests.post(dev_server.url + "/v1/sys/wrapping/lookup", json={"token": info["token"]}).json()
    assert looked_up["data"]["creation_path"] == "sys/wrapping/wrap" and looked_up["data"]["creation_ttl"] == 120
    rewrapped = requests.post(dev_server.url + "/v1/sys/wrapping/rewrap", json={"token": info["token"]},
                              headers={"X-Vault-Token": dev_server.root_token}).json()["wrap_info"]
    assert rewrapped["token"] != info["token"] and rewrapped["creation_path"] == "sys/wrapping/wrap"
    with pytest.raises(hvac.exceptions.InvalidRequest):
        vault.sys.unwrap(info["token"])
    holder = hvac.Client(url=dev_server.url, token=rewrapped["token"])
    assert holder.sys.unwrap()["data"] == {"handed": "over"}


def test_a_wrapped_token_carries_its_accessor(dev_server):
    response = requests.post(dev_server.url + "/v1/auth/token/create", json={"policies": ["default"]},
                             headers={"X-Vault-Token": dev_server.root_token, "X-Vault-Wrap-TTL": "30"}).json()
    info = response["wrap_info"]
    unwrapped = hvac.Client(url=dev_server.url, token=dev_server.root_token).sys.unwrap(info["token"])
    assert unwrapped["auth"]["accessor"] == info["wrapped_accessor"]
    assert hvac.Client(url=dev_server.url, token=unwrapped["auth"]["client_token"]).lookup_token()["data"]


@pytest.mark.parametrize(("ttl", "message"), [("-5", "cannot be negative"), ("soon", "invalid duration")])
def test_a_bad_wrap_ttl_is_refused(dev_server, ttl, message):
    response = requests.get(dev_server.url + "/v1/sys/mounts", headers={"X-Vault-Token": dev_server.root_token,
                                                                         "X-Vault-Wrap-TTL": ttl})
    assert response.status_code == 400 and message in response.json()["errors"][0]


def test_wrap_without_a_ttl_is_refused(dev_server):
    response = requests.post(dev_server.url + "/v1/sys/wrapping/wrap", json={"a": "b"},
                             headers={"X-Vault-Token": dev_server.root_token})
    assert response.status_code == 400 and "requires response wrapping" in response.json()["errors"][0]
