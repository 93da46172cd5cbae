"""Rekey (sys/rekey/*) and root generation (sys/generate-root/*) on a real Core: Vault's status shapes, errors
and protocol, that a finished rekey makes the old unseal keys useless and the new ones work at the new threshold,
and that a generated root token decodes with its OTP into a token the token store knows as root.

How: tests/core/testdata/rekey.txt and generate_root.txt drive `Rekey` and `GenerateRoot` over a Core on the
storage engine's MemoryBackend with a FakeClock and seeded randomness, one `asyncio.run` per command. Responses
are printed as JSON in Vault's field order, with what is random or secret abstracted: each UUID nonce becomes
`nonce-N` (numbered by first appearance), key lists become `<N shares of B bytes>`, an encoded token its byte
count. Key operands are `SET:I` (share I of the init's keys, `init`, or of the n-th finished rekey, `rN`),
`random` (33 random bytes: a share of nothing) or `short` (15 bytes). Updates send the operation's current
nonce unless `nonce=wrong`. Commands:

    init SHARES THRESHOLD | unseal KEY... | seal | seal-status | token init|generated
    rekey-status | rekey-start JSON | rekey-update KEY [nonce=wrong] | rekey-cancel
    rekey-verify-status | rekey-verify KEY [nonce=wrong] | rekey-verify-restart
    root-status | root-start JSON | root-update KEY [nonce=wrong] | root-cancel | root-decode

The other tests check the OTP encoding against a hand-made vector and that no share, KEK, OTP or token reaches
the log.
"""

import asyncio
import base64
import json
import logging
import pathlib
import random
import re

import pytest

from storage import MemoryBackend
from vaultd.clock import FakeClock
from vaultd.core import shamir
from vaultd.core.core import Core
from vaultd.core.generate_root import GenerateRoot, decode_root_token, encode_root_token, otp_length
from vaultd.core.physical import LocalPhysical
from vaultd.core.rekey import Rekey
from vaultd.sdk.errors import VaultError

from .. import datadriven

testdata = pathlib.Path(__file__).parent / "testdata"
SEED = 7
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
WRONG_NONCE = "not-the-nonce"


def new_core(seed: int = SEED) -> Core:
    return Core(LocalPhysical(MemoryBackend()), FakeClock(), randbytes=random.Random(seed).randbytes, engines={})


class Scenario:
    def __init__(self) -> None:
        self.core = new_core()
        self.rekey = Rekey(self.core)
        self.generate_root = GenerateRoot(self.core)
        self.keysets: dict[str, list[bytes]] = {}
        self.tokens = {"init": "", "generated": ""}
        self.nonces = {"rekey": "", "verify": "", "root": ""}
        self.otp = self.encoded_token = ""
        self.labels: dict[str, str] = {}
        self.other = random.Random(SEED + 1)  # for `random` shares, apart from the core's source

    def handle(self, command: str) -> str:
        name, _, rest = command.partition(" ")
        try:
            output = asyncio.run(getattr(self, "do_" + name.replace("-", "_"))(rest.strip()))
        except VaultError as error:
            output = f"error: {type(error).__name__}: {'; '.join(error.messages)}"
        return UUID.sub(self._label, output)

    def _label(self, match: re.Match) -> str:
        return self.labels.setdefault(match.group(), f"nonce-{len(self.labels) + 1}")

    def _key(self, operand: str) -> bytes:
        if operand == "random":
            return self.other.randbytes(33)
        if operand == "short":
            return bytes(15)
        keyset, _, index = operand.partition(":")
        return self.keysets[keyset][int(index)]

    def _key_and_nonce(self, rest: str, nonce: str) -> tuple[bytes, str]:
        operand, *options = rest.split()
        return self._key(operand), WRONG_NONCE if options == ["nonce=wrong"] else nonce

    # --- the vault ---------------------------------------------------------------------------------------

    async def do_init(self, rest: str) -> str:
        shares, threshold = map(int, rest.split())
        result = await self.core.initialize({"secret_shares": shares, "secret_threshold": threshold})
        self.keysets["init"] = [bytes.fromhex(key) for key in result["keys"]]
        self.tokens["init"] = result["root_token"]
        return f"keys={len(result['keys'])} bytes={sorted({len(key) for key in self.keysets['init']})}"

    async def do_unseal(self, rest: str) -> str:
        status = {}
        for operand in rest.split():
            status = await self.core.unseal(self._key(operand))
        return f"sealed={status['sealed']} progress={status['progress']}/{status['t']}"

    async def do_seal(self, rest: str) -> str:
        await self.core.seal_vault()
        return "sealed=True"

    async def do_seal_status(self, rest: str) -> str:
        status = await self.core.seal_status()
        return f"sealed={status['sealed']} t={status['t']} n={status['n']}"

    async def do_token(self, rest: str) -> str:
        if self.core.tokens is None:
            return "sealed"
        entry = await self.core.tokens.lookup(self.tokens[rest])
        return "invalid" if entry is None else f"policies={entry.policies} path={entry.path}"

    # --- sys/rekey ---------------------------------------------------------------------------------------

    async def do_rekey_status(self, rest: str) -> str:
        return self._rekey_seen(await self.rekey.status())

    async def do_rekey_start(self, rest: str) -> str:
        return self._rekey_seen(await self.rekey.start(json.loads(rest)))

    async def do_rekey_update(self, rest: str) -> str:
        response = await self.rekey.update(*self._key_and_nonce(rest, self.nonces["rekey"]))
        if response.get("complete"):
            keys = [bytes.fromhex(key) for key in response["keys"]]
            assert keys == [base64.b64decode(key) for key in response["keys_base64"]]
            self.keysets[f"r{sum(name.startswith('r') for name in self.keysets) + 1}"] = keys
        return self._rekey_seen(response)

    async def do_rekey_cancel(self, rest: str) -> str:
        await self.rekey.cancel()
        return "cancelled"

    async def do_rekey_verify_status(self, rest: str) -> str:
        return self._verify_seen(await self.rekey.verify_status())

    async def do_rekey_verify(self, rest: str) -> str:
        return self._verify_seen(await self.rekey.verify_update(*self._key_and_nonce(rest, self.nonces["verify"])))

    async def do_rekey_verify_restart(self, rest: str) -> str:
        return self._verify_seen(await self.rekey.verify_restart())

    def _rekey_seen(self, response: dict) -> str:
        self.nonces["rekey"] = response["nonce"]
        self.nonces["verify"] = response.get("verification_nonce", self.nonces["verify"])
        return render(response)

    def _verify_seen(self, response: dict) -> str:
        self.nonces["verify"] = response["nonce"]
        return render(response)

    # --- sys/generate-root -------------------------------------------------------------------------------

    async def do_root_status(self, rest: str) -> str:
        return self._root_seen(await self.generate_root.status())

    async def do_root_start(self, rest: str) -> str:
        body = json.loads(rest)
        response = await self.generate_root.start(body)
        self.otp = response["otp"] or body.get("otp", "")
        return self._root_seen(response)

    async def do_root_update(self, rest: str) -> str:
        response = await self.generate_root.update(*self._key_and_nonce(rest, self.nonces["root"]))
        assert response["encoded_token"] == response["encoded_root_token"]
        self.encoded_token = response["encoded_token"] or self.encoded_token
        return self._root_seen(response)

    async def do_root_cancel(self, rest: str) -> str:
        await self.generate_root.cancel()
        return "cancelled"

    async def do_root_decode(self, rest: str) -> str:
        token = decode_root_token(self.encoded_token, self.otp)
        assert token not in self.tokens.values(), "generate-root must make a new token"
        self.tokens["generated"] = token
        return f"prefix={token[:4]} chars={len(token)} " + await self.do_token("generated")

    def _root_seen(self, response: dict) -> str:
        self.nonces["root"] = response["nonce"]
        return render(response)


def render(response: dict) -> str:
    """The response as JSON in its own field order, random and secret values abstracted."""
    shown = dict(response)
    for name in ("keys", "keys_base64"):
        if name in shown:
            keys = [bytes.fromhex(key) if name == "keys" else base64.b64decode(key) for key in shown[name]]
            shown[name] = f"<{len(keys)} shares of {sorted({len(key) for key in keys})} bytes>"
    for name in ("encoded_token", "encoded_root_token"):
        if shown.get(name):
            assert "=" not in shown[name], "Vault encodes the token without padding"
            shown[name] = f"<{len(base64.b64decode(shown[name] + '=' * (-len(shown[name]) % 4)))} bytes>"
    if shown.get("otp"):
        assert re.fullmatch(r"[0-9A-Za-z]+", shown["otp"]), shown["otp"]
        shown["otp"] = f"<{len(shown['otp'])} base62 characters>"
    return json.dumps(shown)


@pytest.mark.parametrize("name", ["rekey.txt", "generate_root.txt"])
def test_scenario(name):
    datadriven.run(testdata / name, Scenario().handle)


def test_the_encoded_token_is_the_token_xor_the_otp_in_unpadded_base64():
    otp = "A" * otp_length
    token = "hvs." + "B" * (otp_length - 4)
    expected = bytes(a ^ b for a, b in zip(token.encode(), otp.encode(), strict=True))
    encoded = encode_root_token(token, otp)
    assert encoded == base64.b64encode(expected).decode().rstrip("=") and len(encoded) == 38
    assert decode_root_token(encoded, otp) == token
    assert encode_root_token(otp, otp) == "A" * 38  # 28 zero bytes
    with pytest.raises(ValueError, match="length of byte slices is not equivalent"):
        decode_root_token(encoded, otp + "A")


def test_no_share_kek_otp_or_token_reaches_the_log(caplog):
    """A full rekey with verification and a root generation, logged at DEBUG: none of their secrets appear."""
    caplog.set_level(logging.DEBUG)
    core = new_core(seed=11)
    rekey, generate_root = Rekey(core), GenerateRoot(core)

    async def run() -> list[bytes | str]:
        init = await core.initialize({"secret_shares": 3, "secret_threshold": 2})
        old = [bytes.fromhex(key) for key in init["keys"]]
        for share in old[:2]:
            await core.unseal(share)
        nonce = (await rekey.start({"secret_shares": 2, "secret_threshold": 2, "require_verification": True}))["nonce"]
        await rekey.update(old[0], nonce)
        done = await rekey.update(old[2], nonce)
        new = [bytes.fromhex(key) for key in done["keys"]]
        for share in new:
            verified = await rekey.verify_update(share, done["verification_nonce"])
        assert verified["complete"]
        attempt = await generate_root.start({})
        await generate_root.update(new[0], attempt["nonce"])
        result = await generate_root.update(new[1], attempt["nonce"])
        token = decode_root_token(result["encoded_token"], attempt["otp"])
        return [*old, *new, shamir.combine(new), shamir.combine(old[:2]), attempt["otp"], token, init["root_token"]]

    secrets = asyncio.run(run())
    assert "rekeyed" in caplog.text and "root generation finished" in caplog.text
    for secret in secrets:
        forms = [secret] if isinstance(secret, str) else [secret.hex(), base64.b64encode(secret).decode()]
        for form in forms:
            assert form not in caplog.text
