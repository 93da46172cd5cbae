"""Rekey and root generation through hvac against a real process: the old unseal keys stop working and the
new ones unseal; a generated root token decodes with its OTP and works."""

import base64

import hvac
import pytest


def test_rekey_and_generate_root_through_hvac(fresh_server):
    vault = hvac.Client(url=fresh_server.url)
    init = vault.sys.initialize(secret_shares=3, secret_threshold=2)
    vault.sys.submit_unseal_keys(init["keys"][:2])
    started = vault.sys.start_rekey(secret_shares=4, secret_threshold=3)
    assert started["started"] is True and started["n"] == 4
    result = vault.sys.rekey_multi(init["keys"][:2], nonce=started["nonce"])
    assert result["complete"] is True and len(result["keys"]) == 4
    vault.token = init["root_token"]
    vault.sys.seal()
    with pytest.raises(hvac.exceptions.InvalidRequest, match="invalid key"):
        vault.sys.submit_unseal_keys(init["keys"])  # three old keys reach the new threshold, and fail
    assert vault.sys.submit_unseal_keys(result["keys"][:3])["sealed"] is False

    otp = "hvs." + "A" * 24
    attempt = vault.sys.start_root_token_generation(otp=otp)
    generated = vault.sys.generate_root(result["keys"][0], attempt["nonce"])
    for key in result["keys"][1:3]:
        generated = vault.sys.generate_root(key, attempt["nonce"])
    assert generated["complete"] is True
    encoded = base64.b64decode(generated["encoded_root_token"] + "=" * (-len(generated["encoded_root_token"]) % 4))
    token = bytes(a ^ b for a, b in zip(encoded, otp.encode(), strict=True)).decode()
    assert token.startswith("hvs.") and token != init["root_token"]
    assert hvac.Client(url=fresh_server.url, token=token).lookup_token()["data"]["policies"] == ["root"]
