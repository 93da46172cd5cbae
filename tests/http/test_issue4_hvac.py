"""Transit, AppRole, userpass and leases through hvac against a real process."""

import base64

import hvac
import pytest
import requests


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def vault(dev_server):
    return hvac.Client(url=dev_server.url, token=dev_server.root_token)


@pytest.mark.parametrize("key_type", ["aes256-gcm96", "chacha20-poly1305", "rsa-2048"])
def test_transit_round_trip_rotate_rewrap_and_min_version(vault, key_type):
    vault.sys.enable_secrets_engine("transit")
    transit = vault.secrets.transit
    transit.create_key(name="app", key_type=key_type)
    old = transit.encrypt_data(name="app", plaintext=b64("hello"))["data"]["ciphertext"]
    assert old.startswith("vault:v1:")
    transit.rotate_key(name="app")
    assert base64.b64decode(transit.decrypt_data(name="app", ciphertext=old)["data"]["plaintext"]) == b"hello"
    rewrapped = transit.rewrap_data(name="app", ciphertext=old)["data"]["ciphertext"]
    assert rewrapped.startswith("vault:v2:")
    transit.update_key_configuration(name="app", min_decryption_version=2)
    with pytest.raises(hvac.exceptions.InvalidRequest):
        transit.decrypt_data(name="app", ciphertext=old)
    assert base64.b64decode(transit.decrypt_data(name="app", ciphertext=rewrapped)["data"]["plaintext"]) == b"hello"


def test_transit_batches_tampering_signing_and_autocreate(vault):
    vault.sys.enable_secrets_engine("transit")
    transit = vault.secrets.transit
    batch = [{"plaintext": b64(f"item {i}")} for i in range(10)]
    results = transit.encrypt_data(name="auto", batch_input=batch)["data"]["batch_results"]
    assert len(results) == 10 and all(r["ciphertext"].startswith("vault:v1:") for r in results)
    tampered = results[0]["ciphertext"][:-4] + ("AAAA" if not results[0]["ciphertext"].endswith("AAAA") else "BBBB")
    with pytest.raises(hvac.exceptions.InvalidRequest, match="message authentication failed"):
        transit.decrypt_data(name="auto", ciphertext=tampered)
    transit.create_key(name="signer", key_type="ed25519")
    signature = transit.sign_data(name="signer", hash_input=b64("msg"))["data"]["signature"]
    assert transit.verify_signed_data(name="signer", hash_input=b64("msg"), signature=signature)["data"]["valid"]
    assert not transit.verify_signed_data(name="signer", hash_input=b64("other"), signature=signature)["data"]["valid"]


def test_userpass_login_and_its_lease(vault, dev_server):
    vault.sys.enable_auth_method("userpass")
    vault.auth.userpass.create_or_update_user(username="alice", password="correct horse", policies=["default"])
    with pytest.raises(hvac.exceptions.InvalidRequest, match="invalid username or password"):
        hvac.Client(url=dev_server.url).auth.userpass.login(username="alice", password="wrong")
    with pytest.raises(hvac.exceptions.InvalidRequest, match="invalid username or password"):
        hvac.Client(url=dev_server.url).auth.userpass.login(username="nobody", password="wrong")
    user = hvac.Client(url=dev_server.url)
    auth = user.auth.userpass.login(username="alice", password="correct horse")["auth"]
    assert auth["metadata"] == {"username": "alice"} and auth["orphan"] is True and auth["renewable"] is True
    assert user.lookup_token()["data"]["display_name"] == "userpass-alice"
    leases = requests.request("LIST", dev_server.url + "/v1/sys/leases/lookup/auth/userpass/login/alice",
                              headers={"X-Vault-Token": dev_server.root_token}).json()["data"]["keys"]
    assert len(leases) == 1
    lease_id = f"auth/userpass/login/alice/{leases[0]}"
    looked_up = vault.sys.read_lease(lease_id)["data"]
    assert looked_up["id"] == lease_id and looked_up["ttl"] > 0
    vault.sys.revoke_lease(lease_id)
    with pytest.raises(hvac.exceptions.Forbidden):
        user.lookup_token()
    with pytest.raises(hvac.exceptions.InvalidRequest, match="invalid lease"):
        vault.sys.read_lease(lease_id)


def test_approle_secret_id_with_one_use_logs_in_once(vault, dev_server):
    vault.sys.enable_auth_method("approle")
    vault.auth.approle.create_or_update_approle(role_name="ci", token_policies=["default"], secret_id_num_uses=1,
                                                token_ttl="10m")
    role_id = vault.auth.approle.read_role_id(role_name="ci")["data"]["role_id"]
    secret_id = vault.auth.approle.generate_secret_id(role_name="ci")["data"]["secret_id"]
    client = hvac.Client(url=dev_server.url)
    auth = client.auth.approle.login(role_id=role_id, secret_id=secret_id)["auth"]
    assert auth["metadata"]["role_name"] == "ci" and 0 < auth["lease_duration"] <= 600
    with pytest.raises(hvac.exceptions.InvalidRequest, match="invalid role or secret ID"):
        client.auth.approle.login(role_id=role_id, secret_id=secret_id)
    vault.sys.revoke_prefix("auth/approle/login")
    with pytest.raises(hvac.exceptions.Forbidden):
        hvac.Client(url=dev_server.url, token=auth["client_token"]).lookup_token()


def test_transit_tools_datakey_hmac_and_export_rules(vault):
    vault.sys.enable_secrets_engine("transit")
    transit = vault.secrets.transit
    transit.create_key(name="k")
    datakey = transit.generate_data_key(name="k", key_type="plaintext")["data"]
    assert len(base64.b64decode(datakey["plaintext"])) == 32 and datakey["ciphertext"].startswith("vault:v1:")
    mac = transit.generate_hmac(name="k", hash_input=b64("data"))["data"]["hmac"]
    assert transit.verify_signed_data(name="k", hash_input=b64("data"), hmac=mac)["data"]["valid"]
    random_hex = transit.generate_random_bytes(n_bytes=16, output_format="hex")["data"]["random_bytes"]
    assert len(bytes.fromhex(random_hex)) == 16
    digest = transit.hash_data(hash_input=b64("abc"), algorithm="sha2-256", output_format="hex")["data"]["sum"]
    assert digest == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    with pytest.raises(hvac.exceptions.InvalidRequest, match="not exportable"):
        transit.export_key(name="k", key_type="encryption-key")
    with pytest.raises(hvac.exceptions.InvalidRequest, match="deletion is not allowed"):
        transit.delete_key(name="k")
    transit.update_key_configuration(name="k", deletion_allowed=True)
    transit.delete_key(name="k")
    with pytest.raises(hvac.exceptions.InvalidPath):
        transit.read_key(name="k")


def test_approle_secret_id_lookup_and_destroy(vault, dev_server):
    vault.sys.enable_auth_method("approle")
    vault.auth.approle.create_or_update_approle(role_name="svc", token_policies=["default"])
    generated = vault.auth.approle.generate_secret_id(role_name="svc", metadata={"host": "web-1"})["data"]
    looked_up = vault.auth.approle.read_secret_id(role_name="svc", secret_id=generated["secret_id"])["data"]
    assert looked_up["secret_id_accessor"] == generated["secret_id_accessor"]
    assert looked_up["metadata"]["host"] == "web-1"
    vault.auth.approle.destroy_secret_id(role_name="svc", secret_id=generated["secret_id"])
    role_id = vault.auth.approle.read_role_id(role_name="svc")["data"]["role_id"]
    with pytest.raises(hvac.exceptions.InvalidRequest, match="invalid role or secret ID"):
        hvac.Client(url=dev_server.url).auth.approle.login(role_id=role_id, secret_id=generated["secret_id"])
    assert vault.auth.approle.list_roles()["data"]["keys"] == ["svc"]
