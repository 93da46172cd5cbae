"""The auto seal and seal migration in the core, over a fake HSM (AES-GCM with a key held in memory, blobs naming
their key): one layer's unit tests. The real PKCS#11 wrapper has its own tests (tests/seal) and the cluster
tests run SoftHSM2."""

import asyncio
import json
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from storage import MemoryBackend
from vaultd.clock import FakeClock
from vaultd.core.core import Core
from vaultd.core.generate_root import decode_root_token
from vaultd.core.physical import LocalPhysical
from vaultd.core.seal import STORED_KEYS_PATH, SealUnavailable
from vaultd.sdk.errors import InvalidRequest


class FakeHsm:
    """Keys by label; `broken` makes every call fail, as a missing token would."""

    def __init__(self, key_label: str = "k1", keys: dict | None = None):
        self.key_label = key_label
        self.keys = keys if keys is not None else {}
        self.keys.setdefault(key_label, os.urandom(32))
        self.broken = ""

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        self._check()
        iv = os.urandom(12)
        return json.dumps({"label": self.key_label, "iv": iv.hex(),
                           "ct": AESGCM(self.keys[self.key_label]).encrypt(iv, plaintext, aad).hex()}).encode()

    def decrypt(self, blob: bytes, aad: bytes) -> bytes:
        self._check()
        record = json.loads(blob)
        return AESGCM(self.keys[record["label"]]).decrypt(bytes.fromhex(record["iv"]), bytes.fromhex(record["ct"]), aad)

    @staticmethod
    def blob_key_label(blob: bytes) -> str:
        return json.loads(blob)["label"]

    def _check(self) -> None:
        if self.broken:
            raise RuntimeError(self.broken)


def core_on(backend, hsm=None, disabled=False) -> Core:
    return Core(LocalPhysical(backend), FakeClock(), engines={}, hsm=hsm, hsm_disabled=disabled)


def run(coroutine):
    return asyncio.run(coroutine)


def test_init_makes_recovery_keys_and_the_node_unseals_itself_after_a_restart():
    async def scenario():
        backend, hsm = MemoryBackend(), FakeHsm()
        core = core_on(backend, hsm)
        with pytest.raises(InvalidRequest, match="not applicable to seal type pkcs11"):
            await core.initialize({"secret_shares": 5, "secret_threshold": 3})
        keys = await core.initialize({"recovery_shares": 3, "recovery_threshold": 2})
        assert keys["keys"] == [] and len(keys["recovery_keys"]) == 3 and keys["root_token"]
        assert core.barrier.sealed is False  # unsealed by the HSM right after init
        status = await core.seal_status()
        assert (status["type"], status["recovery_seal"], status["t"], status["n"]) == ("pkcs11", True, 2, 3)
        await core.barrier.put("logical/x", b"secret")
        restarted = core_on(backend, hsm)
        assert await restarted.auto_unseal() is True
        assert await restarted.barrier.get("logical/x") == b"secret"
        return keys

    run(scenario())


def test_the_stored_root_key_is_useless_without_the_hsm():
    async def scenario():
        backend, hsm = MemoryBackend(), FakeHsm()
        core = core_on(backend, hsm)
        await core.initialize({"recovery_shares": 1, "recovery_threshold": 1})
        stored = backend.get(STORED_KEYS_PATH)
        other = core_on(backend, FakeHsm())  # a different HSM key
        with pytest.raises(SealUnavailable):
            await other.auto_unseal()
        assert other.barrier.sealed and b"secret" not in stored

    run(scenario())


def test_hsm_faults_leave_the_node_sealed_until_the_hsm_is_back():
    async def scenario():
        backend, hsm = MemoryBackend(), FakeHsm()
        await core_on(backend, hsm).initialize({"recovery_shares": 1, "recovery_threshold": 1})
        restarted = core_on(backend, hsm)
        hsm.broken = "pkcs11: the pin was refused (CKR_PIN_INCORRECT)"
        with pytest.raises(SealUnavailable, match="CKR_PIN_INCORRECT"):
            await restarted.auto_unseal()
        assert restarted.barrier.sealed
        hsm.broken = ""
        assert await restarted.auto_unseal() is True

    run(scenario())


def test_after_sys_seal_only_recovery_keys_unseal_and_they_authorise_generate_root():
    async def scenario():
        backend, hsm = MemoryBackend(), FakeHsm()
        core = core_on(backend, hsm)
        keys = await core.initialize({"recovery_shares": 3, "recovery_threshold": 2})
        recovery = [bytes.fromhex(key) for key in keys["recovery_keys"]]
        await core.seal_vault()
        assert await core.auto_unseal() is False and core.barrier.sealed
        await core.unseal(recovery[0])
        assert (await core.unseal(recovery[2]))["sealed"] is False
        attempt = await core.generate_root.start({})
        await core.generate_root.update(recovery[0], attempt["nonce"])
        done = await core.generate_root.update(recovery[1], attempt["nonce"])
        token = decode_root_token(done["encoded_token"], attempt["otp"])
        assert (await core.tokens.lookup(token)).policies == ["root"]

    run(scenario())


def test_rekey_recovery_key_replaces_the_recovery_shares():
    async def scenario():
        backend, hsm = MemoryBackend(), FakeHsm()
        core = core_on(backend, hsm)
        keys = await core.initialize({"recovery_shares": 1, "recovery_threshold": 1})
        with pytest.raises(InvalidRequest, match="rekey-recovery-key"):
            await core.rekey.start({"secret_shares": 1, "secret_threshold": 1})
        started = await core.rekey_recovery.start({"secret_shares": 2, "secret_threshold": 2})
        new = await core.rekey_recovery.update(bytes.fromhex(keys["recovery_keys"][0]), started["nonce"])
        assert (await core.seal_status())["n"] == 2
        await core.seal_vault()
        await core.unseal(bytes.fromhex(keys["recovery_keys"][0]))  # the old share no longer belongs
        with pytest.raises(InvalidRequest):
            await core.unseal(bytes.fromhex(new["keys"][0]))
        assert core.barrier.sealed
        await core.unseal(bytes.fromhex(new["keys"][0]))
        assert (await core.unseal(bytes.fromhex(new["keys"][1])))["sealed"] is False

    run(scenario())


def test_migration_shamir_to_pkcs11_and_back_keeps_the_data_and_the_shares():
    async def scenario():
        backend, hsm = MemoryBackend(), FakeHsm()
        shamir_core = core_on(backend)
        keys = await shamir_core.initialize({"secret_shares": 3, "secret_threshold": 2})
        shares = [bytes.fromhex(key) for key in keys["keys"]]
        for share in shares[:2]:
            await shamir_core.unseal(share)
        await shamir_core.barrier.put("logical/x", b"kept")

        to_hsm = core_on(backend, hsm)  # cluster.toml now says pkcs11: the stored seal is still Shamir
        assert (await to_hsm.seal_status())["migration"] is True
        assert await to_hsm.auto_unseal() is False
        with pytest.raises(InvalidRequest, match="migration is pending"):
            await to_hsm.unseal(shares[0])
        await to_hsm.unseal(shares[0], migrate=True)
        assert (await to_hsm.unseal(shares[2], migrate=True))["sealed"] is False
        status = await to_hsm.seal_status()
        assert (status["type"], status["migration"], status["t"], status["n"]) == ("pkcs11", False, 2, 3)
        assert await core_on(backend, hsm).auto_unseal() is True  # a restart unseals by itself now

        to_shamir = core_on(backend, hsm, disabled=True)  # the pkcs11 table kept with disabled = true
        assert (await to_shamir.seal_status())["migration"] is True
        await to_shamir.unseal(shares[1], migrate=True)  # the old unseal shares are the recovery shares
        assert (await to_shamir.unseal(shares[0], migrate=True))["sealed"] is False
        plain = core_on(backend)
        for share in shares[:2]:
            await plain.unseal(share)
        assert await plain.barrier.get("logical/x") == b"kept"

    run(scenario())


def test_a_new_hsm_key_takes_over_through_migration():
    async def scenario():
        backend, keys_by_label = MemoryBackend(), {}
        old = FakeHsm("k1", keys_by_label)
        core = core_on(backend, old)
        keys = await core.initialize({"recovery_shares": 1, "recovery_threshold": 1})
        new = FakeHsm("k2", keys_by_label)  # the token holds both keys
        moved = core_on(backend, new)
        assert (await moved.seal_status())["migration"] is True and await moved.auto_unseal() is False
        assert (await moved.unseal(bytes.fromhex(keys["recovery_keys"][0]), migrate=True))["sealed"] is False
        assert FakeHsm.blob_key_label(backend.get(STORED_KEYS_PATH)) == "k2"
        del keys_by_label["k1"]  # the old key can go now
        assert await core_on(backend, new).auto_unseal() is True

    run(scenario())
