"""The barrier encrypts every value in Vault's format and the keyring behaves as Vault's does.

Each test drives a real `Barrier` over `LocalPhysical` and a `MemoryBackend` (one end-to-end test over a
`LogStore` on disk), then looks at the raw stored bytes and decrypts them by hand with the keys read from
`core/keyring`, so a wrong layout, AAD, term or keyring field fails a test and not just a round trip.
Tests are async bodies run by `asyncio.run`; time is a FakeClock.
"""

import asyncio
import base64
import json
import os
import struct

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from storage import LogStore, MemoryBackend
from vaultd.clock import FakeClock
from vaultd.core.barrier import (
    KEYRING_PATH,
    ROOT_KEY_PATH,
    Barrier,
    Key,
    Keyring,
    RotationConfig,
    decrypt_value,
    format_rfc3339,
    parse_rfc3339,
    plaintext_bytes_max,
)
from vaultd.core.physical import LocalPhysical
from vaultd.core.view import BarrierView
from vaultd.sdk.errors import InternalError, InvalidRequest, NotInitialized, RequestTooLarge, Sealed

ROOT_KEY = bytes(range(32))
OTHER_KEY = bytes(range(100, 132))
START = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def run(test):
    """Run an async test body on a fresh event loop."""
    return asyncio.run(test())


async def unsealed(physical=None, clock=None, **options) -> Barrier:
    barrier = Barrier(physical or LocalPhysical(MemoryBackend()), clock or FakeClock(START), **options)
    await barrier.initialize(ROOT_KEY)
    await barrier.unseal(ROOT_KEY)
    return barrier


async def stored_keyring(physical, root_key=ROOT_KEY) -> Keyring:
    """The keyring as persisted, decrypted by hand with the root key."""
    return Keyring.from_json(decrypt_value(AESGCM(root_key), KEYRING_PATH, await physical.get(KEYRING_PATH)))


def expect(error_class, message):
    return pytest.raises(error_class, match=f"^{message}$")


# --- the value format ----------------------------------------------------------------------------------


def test_values_are_stored_in_vaults_layout_with_the_path_as_aad():
    async def body():
        physical = LocalPhysical(MemoryBackend())
        barrier = await unsealed(physical)
        await barrier.put("logical/kv/a", b"plain secret")
        await barrier.put("logical/kv/b", b"plain secret")
        raw, other = await physical.get("logical/kv/a"), await physical.get("logical/kv/b")
        assert raw[:4] == struct.pack(">I", 1) and raw[4] == 0x02
        assert len(raw) == len(b"plain secret") + 33
        assert raw[5:17] != other[5:17]  # a fresh nonce for each encryption
        data_key = (await stored_keyring(physical)).keys[1].value
        assert AESGCM(data_key).decrypt(raw[5:17], raw[17:], b"logical/kv/a") == b"plain secret"
        assert await barrier.get("logical/kv/a") == b"plain secret"
        assert await barrier.get("logical/kv/missing") is None

    run(body)


def test_a_ciphertext_moved_or_changed_does_not_decrypt():
    async def body():
        physical = LocalPhysical(MemoryBackend())
        barrier = await unsealed(physical)
        await barrier.put("logical/a/secret", b"for a only")
        raw = await physical.get("logical/a/secret")
        await physical.put("logical/b/secret", raw)
        with expect(InternalError, "decryption failed: message authentication failed"):
            await barrier.get("logical/b/secret")
        await physical.put("logical/a/flipped", raw[:-1] + bytes([raw[-1] ^ 1]))
        with expect(InternalError, "decryption failed: message authentication failed"):
            await barrier.get("logical/a/flipped")
        assert await barrier.get("logical/a/secret") == b"for a only"

    run(body)


def test_version_1_values_decrypt_without_aad_and_unknown_versions_are_refused():
    async def body():
        physical = LocalPhysical(MemoryBackend())
        barrier = await unsealed(physical)
        data_key = (await stored_keyring(physical)).keys[1].value
        nonce = os.urandom(12)
        sealed = AESGCM(data_key).encrypt(nonce, b"old format", None)
        await physical.put("legacy", struct.pack(">IB", 1, 1) + nonce + sealed)
        assert await barrier.get("legacy") == b"old format"
        await physical.put("future", struct.pack(">IB", 1, 3) + nonce + sealed)
        with expect(InternalError, "version bytes mis-match"):
            await barrier.get("future")

    run(body)


def test_a_value_under_an_unknown_term_names_the_term():
    async def body():
        physical = LocalPhysical(MemoryBackend())
        barrier = await unsealed(physical)
        await barrier.put("a", b"x")
        raw = await physical.get("a")
        await physical.put("a", struct.pack(">I", 7) + raw[4:])
        with expect(InternalError, "no decryption key available for term 7"):
            await barrier.get("a")

    run(body)


def test_values_past_the_limit_and_empty_keys_are_refused():
    async def body():
        barrier = await unsealed()
        await barrier.put("big", bytes(plaintext_bytes_max))  # the ciphertext just fits the storage limit
        with pytest.raises(RequestTooLarge):
            await barrier.put("big", bytes(plaintext_bytes_max + 1))
        with pytest.raises(InvalidRequest):
            await barrier.put("", b"x")
        assert len(await barrier.get("big")) == plaintext_bytes_max

    run(body)


# --- seal state ----------------------------------------------------------------------------------------


def test_a_sealed_barrier_refuses_every_encrypted_operation_but_serves_raw_entries():
    async def body():
        physical = LocalPhysical(MemoryBackend())
        barrier = Barrier(physical, FakeClock(START))
        with pytest.raises(NotInitialized):
            await barrier.unseal(ROOT_KEY)
        await barrier.initialize(ROOT_KEY)
        assert barrier.sealed  # initialize does not unseal, as in Vault
        for operation in (
            barrier.get("a"),
            barrier.put("a", b"x"),
            barrier.delete("a"),
            barrier.list(""),
            barrier.transaction([("put", "a", b"x")]),
            barrier.rotate(),
            barrier.rekey_root_key(OTHER_KEY),
        ):
            with pytest.raises(Sealed):
                await operation
        with pytest.raises(Sealed):
            barrier.key_status()
        await barrier.raw_put("core/seal-config", b'{"type":"shamir"}')
        assert await barrier.raw_get("core/seal-config") == b'{"type":"shamir"}'
        assert await physical.get("core/seal-config") == b'{"type":"shamir"}'  # plaintext, by design
        assert await physical.get("a") is None

    run(body)


def test_seal_forgets_the_keys():
    async def body():
        barrier = await unsealed()
        await barrier.put("a", b"x")
        barrier.seal()
        assert barrier.sealed
        with pytest.raises(Sealed):
            await barrier.get("a")
        await barrier.unseal(ROOT_KEY)
        assert await barrier.get("a") == b"x"

    run(body)


def test_a_wrong_root_key_is_an_invalid_key_and_leaves_the_barrier_sealed():
    async def body():
        physical = LocalPhysical(MemoryBackend())
        barrier = Barrier(physical, FakeClock(START))
        await barrier.initialize(ROOT_KEY)
        for wrong in (OTHER_KEY, ROOT_KEY[:31], b""):
            with expect(InvalidRequest, "invalid key"):
                await barrier.unseal(wrong)
            assert barrier.sealed
        with pytest.raises(Sealed):
            await barrier.get("a")
        await barrier.unseal(ROOT_KEY)
        assert not barrier.sealed

    run(body)


def test_initialize_twice_is_refused_and_keeps_the_first_keyring():
    async def body():
        physical = LocalPhysical(MemoryBackend())
        barrier = Barrier(physical, FakeClock(START))
        await barrier.initialize(ROOT_KEY)
        with expect(InvalidRequest, "barrier already initialized"):
            await barrier.initialize(OTHER_KEY)
        with pytest.raises(InvalidRequest):
            await Barrier(LocalPhysical(MemoryBackend()), FakeClock()).initialize(b"short")
        await barrier.unseal(ROOT_KEY)

    run(body)


# --- the keyring ---------------------------------------------------------------------------------------


def test_the_keyring_and_root_key_are_stored_as_vault_stores_them():
    async def body():
        physical = LocalPhysical(MemoryBackend())
        barrier = await unsealed(physical)
        await barrier.rotate()
        raw = await physical.get(KEYRING_PATH)
        assert raw[:5] == struct.pack(">IB", 1, 2)  # term prefix 1 whatever the active term
        with pytest.raises(InvalidTag):  # the AAD is "core/keyring": any other path fails the tag
            decrypt_value(AESGCM(ROOT_KEY), "core/other", raw)
        encoded = json.loads(decrypt_value(AESGCM(ROOT_KEY), KEYRING_PATH, raw))
        assert set(encoded) == {"MasterKey", "Keys", "RotationConfig"}
        assert base64.b64decode(encoded["MasterKey"]) == ROOT_KEY
        assert [key["Term"] for key in encoded["Keys"]] == [1, 2]
        root_raw = await physical.get(ROOT_KEY_PATH)
        assert root_raw[:4] == struct.pack(">I", 2)  # core/root-key is under the active data key
        data_key = base64.b64decode(encoded["Keys"][1]["Value"])
        root_entry = json.loads(decrypt_value(AESGCM(data_key), ROOT_KEY_PATH, root_raw))
        assert root_entry == {
            "Term": 1,
            "Version": 1,
            "Value": base64.b64encode(ROOT_KEY).decode(),
            "InstallTime": "0001-01-01T00:00:00Z",
        }

    run(body)


def test_keyring_json_uses_vaults_field_names_and_round_trips():
    first = Key(term=1, value=bytes(32), install_time_ns=parse_rfc3339("2023-11-14T22:13:20.123456789Z"))
    second = Key(term=2, value=bytes([7]) * 32, install_time_ns=1_700_000_100 * 10**9, encryptions=41)
    keyring = Keyring(ROOT_KEY).add_term(first).add_term(second)
    encoded = json.loads(keyring.to_json())
    assert encoded == {
        "MasterKey": base64.b64encode(ROOT_KEY).decode(),
        "Keys": [
            {"Term": 1, "Version": 1, "Value": "A" * 43 + "=", "InstallTime": "2023-11-14T22:13:20.123456789Z"},
            {
                "Term": 2,
                "Version": 1,
                "Value": base64.b64encode(bytes([7]) * 32).decode(),
                "InstallTime": "2023-11-14T22:15:00Z",
                "encryptions": 41,
            },
        ],
        "RotationConfig": {"Disabled": False, "MaxOperations": 3_865_470_566, "Interval": 0},
    }
    assert Keyring.from_json(keyring.to_json()) == keyring
    assert keyring.active_term == 2


def test_keyring_json_written_by_go_parses_with_any_field_case_and_offset():
    go_json = {
        "MasterKey": base64.b64encode(ROOT_KEY).decode(),
        "Keys": [
            {
                "Term": 3,
                "Version": 1,
                "Value": base64.b64encode(bytes(32)).decode(),
                "InstallTime": "2023-11-15T00:13:20.5+02:00",
                "Encryptions": 9,
            },
            {
                "term": 1,
                "version": 1,
                "value": base64.b64encode(bytes([1]) * 32).decode(),
                "installTime": "2023-11-14T22:13:20Z",
            },
        ],
        "RotationConfig": {"Disabled": False, "MaxOperations": 5, "Interval": 60 * 10**9},
    }
    keyring = Keyring.from_json(json.dumps(go_json).encode())
    assert keyring.active_term == 3 and keyring.active_key.encryptions == 9
    assert format_rfc3339(keyring.active_key.install_time_ns) == "2023-11-14T22:13:20.5Z"
    # Vault's Sanitize: at least 1,000,000 operations and 24 h
    assert keyring.rotation_config == RotationConfig(False, 1_000_000, 24 * 3600 * 10**9)
    with expect(InternalError, "keyring deserialization failed: .*"):
        Keyring.from_json(b'{"MasterKey": "not base64!", "Keys": []}')


def test_add_term_refuses_a_conflicting_key_and_zeroes_retired_counts():
    keyring = Keyring(ROOT_KEY).add_term(Key(term=1, value=bytes(32), install_time_ns=0, encryptions=5))
    assert keyring.add_term(Key(term=1, value=bytes(32), install_time_ns=1)) is keyring
    with expect(InternalError, "conflicting key for term 1 already installed"):
        keyring.add_term(Key(term=1, value=bytes([1]) * 32, install_time_ns=0))
    rotated = keyring.add_term(Key(term=2, value=bytes([2]) * 32, install_time_ns=0))
    assert rotated.active_term == 2 and rotated.keys[1].encryptions == 0  # as Vault's AddKey
    assert keyring.keys[1].encryptions == 5  # the original is unchanged


# --- rotation ------------------------------------------------------------------------------------------


def test_rotate_adds_a_term_new_writes_use_it_and_old_terms_still_decrypt():
    async def body():
        physical, clock = LocalPhysical(MemoryBackend()), FakeClock(START)
        barrier = await unsealed(physical, clock)
        assert barrier.key_status() == {"term": 1, "install_time": "2023-11-14T22:13:20Z", "encryptions": 1}
        await barrier.put("old", b"under term 1")
        clock.advance(60)
        assert await barrier.rotate() == 2
        await barrier.put("new", b"under term 2")
        assert (await physical.get("old"))[:4] == struct.pack(">I", 1)
        assert (await physical.get("new"))[:4] == struct.pack(">I", 2)
        status = barrier.key_status()
        assert status["term"] == 2 and status["install_time"] == "2023-11-14T22:14:20Z"
        barrier.seal()
        await barrier.unseal(ROOT_KEY)  # the rotation was persisted
        assert barrier.key_status()["term"] == 2
        assert await barrier.get("old") == b"under term 1"
        assert await barrier.get("new") == b"under term 2"

    run(body)


def test_the_barrier_rotates_by_itself_once_a_term_exceeds_its_encryptions():
    async def body():
        physical = LocalPhysical(MemoryBackend())
        barrier = await unsealed(physical, encryptions_max=5)
        # initialize counted the core/root-key encryption: term 1 starts at 1
        while barrier.key_status()["encryptions"] <= 5:
            await barrier.put("a", b"x")
            assert (await physical.get("a"))[:4] == struct.pack(">I", 1)
        assert barrier.key_status() == {"term": 1, "install_time": "2023-11-14T22:13:20Z", "encryptions": 6}
        await barrier.put("b", b"y")
        assert (await physical.get("b"))[:4] == struct.pack(">I", 2)
        assert (await stored_keyring(physical)).active_term == 2  # persisted
        assert barrier.key_status()["encryptions"] == 2  # core/root-key and b
        while barrier.key_status()["encryptions"] <= 5:
            await barrier.transaction([("put", "c", b"z")])
        await barrier.transaction([("put", "c", b"z")])  # a transaction rotates too
        assert (await physical.get("c"))[:4] == struct.pack(">I", 3)
        assert await barrier.get("a") == b"x" and await barrier.get("b") == b"y"

    run(body)


def test_encryption_counts_survive_a_restart_once_persisted():
    async def body():
        physical = LocalPhysical(MemoryBackend())
        barrier = await unsealed(physical)
        for _ in range(3):
            await barrier.put("a", b"x")
        assert barrier.key_status()["encryptions"] == 4
        await barrier.persist_encryptions()  # counts the core/root-key encryption it makes
        assert (await stored_keyring(physical)).active_key.encryptions == 5
        barrier.seal()
        await barrier.unseal(ROOT_KEY)
        assert barrier.key_status()["encryptions"] == 5

    run(body)


def test_a_keyring_change_that_races_a_seal_leaves_the_barrier_sealed():
    class SealingPhysical(LocalPhysical):
        barrier = None

        async def transaction(self, ops):
            if self.barrier is not None:
                self.barrier.seal()  # an operator seals while the keyring write is in flight
            return await super().transaction(ops)

    async def body():
        physical = SealingPhysical(MemoryBackend())
        barrier = await unsealed(physical)
        physical.barrier = barrier
        with expect(Sealed, "the barrier was sealed while its keyring was being written"):
            await barrier.rotate()
        assert barrier.sealed

    run(body)


def test_rekey_root_key_reencrypts_only_the_keyring():
    async def body():
        physical = LocalPhysical(MemoryBackend())
        barrier = await unsealed(physical)
        await barrier.put("a", b"x")
        data_keys = (await stored_keyring(physical)).keys
        await barrier.rekey_root_key(OTHER_KEY)
        barrier.seal()
        with expect(InvalidRequest, "invalid key"):
            await barrier.unseal(ROOT_KEY)
        await barrier.unseal(OTHER_KEY)
        assert await barrier.get("a") == b"x"
        assert barrier.key_status()["term"] == 1
        after = await stored_keyring(physical, OTHER_KEY)
        assert after.root_key == OTHER_KEY and after.keys[1].value == data_keys[1].value

    run(body)


def test_a_standby_reloads_the_keyring_after_a_rotation_and_a_rekey():
    async def body():
        physical = LocalPhysical(MemoryBackend())
        leader = await unsealed(physical)
        standby = Barrier(physical, FakeClock(START))
        await standby.unseal(ROOT_KEY)
        await leader.rotate()
        await leader.put("a", b"x")
        with expect(InternalError, "no decryption key available for term 2"):
            await standby.get("a")
        await standby.reload_keyring()
        assert await standby.get("a") == b"x"
        await leader.rekey_root_key(OTHER_KEY)
        await leader.put("b", b"y")
        await standby.reload_keyring()  # the old root key fails; core/root-key, under term 2, gives the new one
        assert await standby.get("b") == b"y"
        standby.seal()
        await standby.unseal(OTHER_KEY)

    run(body)


def test_transaction_encrypts_every_put_and_applies_atomically():
    async def body():
        physical = LocalPhysical(MemoryBackend())
        barrier = await unsealed(physical)
        await barrier.put("gone", b"old")
        index = await barrier.transaction([("put", "x", b"1"), ("put", "y", b"2"), ("delete", "gone", None)])
        assert index == physical.backend.applied_index
        assert (await physical.get("x"))[4] == 0x02 and await barrier.get("y") == b"2"
        assert await barrier.get("gone") is None
        with pytest.raises(InvalidRequest, match="unknown op"):  # the whole batch is refused: nothing applied
            await barrier.transaction([("put", "z", b"3"), ("frobnicate", "x", None)])
        assert await barrier.get("z") is None and await barrier.get("x") == b"1"

    run(body)


# --- views ---------------------------------------------------------------------------------------------


def test_views_are_isolated_by_prefix():
    async def body():
        physical = LocalPhysical(MemoryBackend())
        barrier = await unsealed(physical)
        view_a, view_b = BarrierView(barrier, "logical/a/"), BarrierView(barrier, "logical/b/")
        await view_a.put("config/x", b"a's")
        assert await view_b.get("config/x") is None
        assert await view_a.list("") == ["config/"] and await view_b.list("") == []
        assert await view_a.list("config/") == ["x"]
        raw = await physical.get("logical/a/config/x")  # the AAD is the full physical path
        data_key = (await stored_keyring(physical)).keys[1].value
        assert decrypt_value(AESGCM(data_key), "logical/a/config/x", raw) == b"a's"
        config = view_a.sub_view("config/")
        assert await config.get("x") == b"a's"
        await config.delete("x")
        assert await view_a.get("config/x") is None

    run(body)


def test_views_refuse_keys_that_escape_their_prefix():
    async def body():
        barrier = await unsealed()
        view = BarrierView(barrier, "logical/a/")
        await BarrierView(barrier, "logical/b/").put("secret", b"b's")
        for key in ("../b/secret", "x/../../b/secret", "..", "/logical/b/secret"):
            for operation in (lambda k: view.get(k), lambda k: view.put(k, b"x"), lambda k: view.delete(k)):
                with pytest.raises(InvalidRequest):
                    await operation(key)
        with pytest.raises(InvalidRequest):
            await view.list("../")
        for prefix in ("../", "/abs/", "no-slash"):
            with pytest.raises(InvalidRequest):
                view.sub_view(prefix)
            with pytest.raises(InvalidRequest):
                BarrierView(barrier, prefix)
        assert await BarrierView(barrier, "logical/b/").get("secret") == b"b's"

    run(body)


# --- end to end on disk --------------------------------------------------------------------------------


def test_no_plaintext_reaches_the_data_directory(tmp_path):
    secret = b"plaintext-marker-" + os.urandom(8).hex().encode()
    directory = tmp_path / "data"

    async def write():
        store = LogStore.open(str(directory), background=False)
        try:
            barrier = await unsealed(LocalPhysical(store))
            await BarrierView(barrier, "logical/kv/").put("data/password", secret)
            await barrier.rotate()
            await barrier.transaction([("put", "logical/kv/data/other", secret)])
        finally:
            store.close()

    async def read():
        store = LogStore.open(str(directory), background=False)
        try:
            barrier = Barrier(LocalPhysical(store), FakeClock(START))
            await barrier.unseal(ROOT_KEY)
            return await barrier.get("logical/kv/data/password"), await barrier.get("logical/kv/data/other")
        finally:
            store.close()

    asyncio.run(write())
    files = [path for path in directory.rglob("*") if path.is_file()]
    assert files
    for path in files:
        content = path.read_bytes()
        for needle in (secret, base64.b64encode(secret), ROOT_KEY, b"MasterKey"):
            assert needle not in content, f"{needle!r} in {path}"
    assert b"logical/kv/data/password" in b"".join(path.read_bytes() for path in files)  # keys are plaintext
    assert asyncio.run(read()) == (secret, secret)
