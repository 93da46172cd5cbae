"""The barrier: the single point of encryption between vaultd and untrusted storage (`reference/storage.md` §1).

Each value is AES-256-GCM ciphertext in Vault's layout, `[term u32 BE][0x02][nonce 12][ct][tag 16]`, with
the storage path as AAD. Data keys are terms of a `Keyring` stored at `core/keyring` (Vault's EncodedKeyring
JSON under the root key, term prefix 1, AAD "core/keyring"); old terms keep decrypting after a rotation.
Each keyring write also writes `core/root-key` (the root key under the active data key, as Vault does) in
the same transaction, so a standby holding the data keys can follow a rekey (`reload_keyring`). Encryptions
by the active term are counted, and the barrier rotates on its own before NIST's random-nonce GCM bound.
Paths that the seal reads while sealed go through `raw_get`/`raw_put`, in plaintext.
"""

import asyncio
import json
import os
import struct
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vaultd import limits
from vaultd.clock import Clock
from vaultd.sdk.errors import InternalError, InvalidRequest, NotInitialized, RequestTooLarge, Sealed

from .ha import record_write
from .keyring import (  # noqa: F401 - re-exported: the keyring is part of the barrier's surface
    GO_ZERO_TIME_NS,
    KEY_SIZES_BYTES,
    Key,
    Keyring,
    RotationConfig,
    data_key_bytes,
    format_rfc3339,
    parse_rfc3339,
)
from .physical import Op, Physical

KEYRING_PATH = "core/keyring"
ROOT_KEY_PATH = "core/root-key"
BARRIER_PATHS = (KEYRING_PATH, ROOT_KEY_PATH)  # written only by the barrier itself, never raw

INITIAL_TERM = 1  # the term prefix of core/keyring, whatever the active term
VERSION_NO_AAD = 0x01  # AESGCMVersion1: still decrypts
VERSION_PATH_AAD = 0x02  # AESGCMVersion2: what every write uses
nonce_bytes = 12
tag_bytes = 16
_PREFIX = struct.Struct(">IB")  # term, version
overhead_bytes = _PREFIX.size + nonce_bytes + tag_bytes
# The stored ciphertext is what is proposed, so the plaintext must leave room for the overhead.
plaintext_bytes_max = limits.value_bytes_max - overhead_bytes


assert overhead_bytes == 33


# --- the value format ----------------------------------------------------------------------------------


def encrypt_value(aead: AESGCM, term: int, path: str, plaintext: bytes) -> bytes:
    """`[term][0x02][nonce][ct+tag]` with `path` as AAD; a fresh random nonce each time (storage.md §1.5)."""
    nonce = os.urandom(nonce_bytes)
    return _PREFIX.pack(term, VERSION_PATH_AAD) + nonce + aead.encrypt(nonce, bytes(plaintext), path.encode())


def decrypt_value(aead: AESGCM, path: str, ciphertext: bytes) -> bytes:
    """The plaintext, or InvalidTag when the key or the path is wrong or the bytes were changed."""
    if len(ciphertext) < overhead_bytes:
        raise InternalError("invalid cipher length")
    version = ciphertext[4]
    if version not in (VERSION_NO_AAD, VERSION_PATH_AAD):
        raise InternalError("version bytes mis-match")
    aad = path.encode() if version == VERSION_PATH_AAD else None
    nonce = ciphertext[_PREFIX.size : _PREFIX.size + nonce_bytes]
    return aead.decrypt(nonce, ciphertext[_PREFIX.size + nonce_bytes :], aad)


def term_of(ciphertext: bytes) -> int:
    if len(ciphertext) < _PREFIX.size:
        raise InternalError("invalid value")
    return _PREFIX.unpack_from(ciphertext)[0]


def _check_key_size(key: bytes, what: str) -> None:
    if not isinstance(key, bytes | bytearray) or len(key) not in KEY_SIZES_BYTES:
        raise InvalidRequest(f"{what} must be 16, 24 or 32 bytes")


def _open_keyring(root_key: bytes, stored: bytes) -> Keyring:
    if term_of(stored) != INITIAL_TERM:
        raise InternalError("keyring term mis-match")
    try:
        _check_key_size(root_key, "root key")
        plaintext = decrypt_value(AESGCM(bytes(root_key)), KEYRING_PATH, stored)
    except (InvalidRequest, InvalidTag):
        raise InvalidRequest("invalid key") from None
    return Keyring.from_json(plaintext)


def _check_entry(path: str, value: bytes) -> None:
    assert isinstance(value, bytes | bytearray | memoryview), f"a stored value is bytes, not {type(value)}"
    if not path:
        raise InvalidRequest("the storage key must not be empty")
    if len(path.encode()) > limits.key_bytes_max:
        raise InvalidRequest(f"storage key of {len(path.encode())} bytes, over {limits.key_bytes_max}")
    if len(value) > plaintext_bytes_max:
        raise RequestTooLarge(f"value of {len(value)} bytes, over {plaintext_bytes_max}")


# --- the barrier ---------------------------------------------------------------------------------------


class Barrier:
    """Sealed until `unseal(root_key)`; while unsealed, get/put/delete/list/transaction en- and decrypt."""

    def __init__(self, physical: Physical, clock: Clock, *, encryptions_max: int = limits.encryptions_per_term_max):
        assert 0 < encryptions_max <= limits.encryptions_per_term_max
        self._physical = physical
        self._clock = clock
        self._encryptions_max = encryptions_max
        self._keyring: Keyring | None = None  # invariant: None exactly when sealed
        self._aeads: dict[int, AESGCM] = {}  # term -> cipher, built on first use, emptied on seal
        # invariant: >= the active key's persisted `encryptions`; counts encryptions by the active term only
        self._encryptions = 0
        self._seals = 0  # bumped by seal(): a keyring change that awaited storage across a seal is dropped
        self._keyring_lock = asyncio.Lock()  # one keyring change at a time

    @property
    def sealed(self) -> bool:
        return self._keyring is None

    async def initialized(self) -> bool:
        return await self._physical.get(KEYRING_PATH) is not None

    async def initialize(self, root_key: bytes) -> None:
        """Create the keyring (term 1) under `root_key` and persist it. The barrier stays sealed."""
        _check_key_size(root_key, "root key")
        async with self._keyring_lock:
            if await self.initialized():
                raise InvalidRequest("barrier already initialized")
            key = Key(term=INITIAL_TERM, value=os.urandom(data_key_bytes), install_time_ns=self._now_ns())
            ops, _ = _keyring_ops(Keyring(bytes(root_key)).add_term(key))
            record_write(await self._physical.transaction(ops))

    async def unseal(self, root_key: bytes) -> None:
        """Open the keyring with `root_key`; a wrong key is InvalidRequest("invalid key") and stays sealed."""
        if self._keyring is not None:
            return
        stored = await self._physical.get(KEYRING_PATH)
        if stored is None:
            raise NotInitialized()
        keyring = _open_keyring(root_key, stored)
        if self._keyring is None:
            self._keyring, self._aeads, self._encryptions = keyring, {}, keyring.active_key.encryptions

    def seal(self) -> None:
        """Forget every key. (Python cannot reliably zero `bytes`; dropping the references is what it has.)"""
        self._keyring, self._aeads, self._encryptions = None, {}, 0
        self._seals += 1

    # --- encrypted entries ---------------------------------------------------------------------------

    async def get(self, path: str) -> bytes | None:
        self._unsealed_keyring()
        stored = await self._physical.get(path)
        return None if stored is None else self._decrypt(path, stored)

    async def put(self, path: str, value: bytes) -> int:
        """Encrypt and store; returns the physical index of the write."""
        await self._rotate_if_due()
        return record_write(await self._physical.put(path, self._encrypt(path, value)))

    async def delete(self, path: str) -> int:
        self._unsealed_keyring()
        return record_write(await self._physical.delete(path))

    async def list(self, prefix: str) -> list[str]:
        self._unsealed_keyring()
        return await self._physical.list(prefix)

    async def transaction(self, ops: Sequence[Op]) -> int:
        """Encrypt every put and apply all of `ops` atomically."""
        self._unsealed_keyring()
        await self._rotate_if_due()
        sealed_ops = [(op, path, self._encrypt(path, value) if op == "put" else value) for op, path, value in ops]
        return record_write(await self._physical.transaction(sealed_ops))

    def seal_value(self, path: str, value: bytes) -> bytes:
        """`value` encrypted under the active term with `path` as AAD, for a blob kept outside the store."""
        return self._encrypt(path, value)

    def open_value(self, path: str, sealed: bytes) -> bytes:
        """The reverse of seal_value; InvalidRequest (or another VaultError) when this keyring cannot open it."""
        return self._decrypt(path, sealed)

    # --- plaintext entries, readable while sealed ----------------------------------------------------

    async def raw_get(self, path: str) -> bytes | None:
        return await self._physical.get(path)

    async def raw_put(self, path: str, value: bytes) -> int:
        """Store `value` as is. Only for what must be read while sealed: the seal config and stored keys."""
        assert path not in BARRIER_PATHS, f"{path} is written by the barrier only"
        return record_write(await self._physical.put(path, value))

    async def raw_transaction(self, ops: Sequence[Op]) -> int:
        """Plaintext puts and deletes, atomically: the seal's records, which must be read while sealed."""
        assert all(path not in BARRIER_PATHS for _, path, _ in ops), "barrier paths are written by the barrier only"
        return record_write(await self._physical.transaction(ops))

    async def raw_delete(self, path: str) -> int:
        assert path not in BARRIER_PATHS, f"{path} is written by the barrier only"
        return record_write(await self._physical.delete(path))

    # --- keys ----------------------------------------------------------------------------------------

    def key_status(self) -> dict:
        """Vault's sys/key-status: the active term, when it was installed, and what it has encrypted."""
        key = self._unsealed_keyring().active_key
        return {"term": key.term, "install_time": format_rfc3339(key.install_time_ns), "encryptions": self._encryptions}

    async def rotate(self) -> int:
        """Add a new term and make it active; returns it. Values under older terms keep decrypting."""
        async with self._keyring_lock:
            return await self._rotate_locked()

    async def rekey_root_key(self, new_root_key: bytes) -> None:
        """Re-encrypt the keyring under `new_root_key`. The data-key terms do not change."""
        _check_key_size(new_root_key, "root key")
        async with self._keyring_lock:
            keyring = self._unsealed_keyring().with_root_key(new_root_key)
            await self._persist(keyring.with_encryptions(self._encryptions))

    async def persist_encryptions(self) -> None:
        """Write the active term's count into the keyring, so a restart resumes it (Vault: every 5 min)."""
        async with self._keyring_lock:
            keyring = self._unsealed_keyring()
            if self._encryptions != keyring.active_key.encryptions:
                await self._persist(keyring.with_encryptions(self._encryptions))

    async def reload_keyring(self) -> None:
        """Re-read `core/keyring` after another node rotated or rekeyed it. After a rekey the old root key
        fails; the new one is read from `core/root-key`, under a data key this node already holds."""
        async with self._keyring_lock:
            keyring, seals = self._unsealed_keyring(), self._seals
            stored = await self._physical.get(KEYRING_PATH)
            if stored is None:
                raise InternalError("keyring unexpectedly missing")
            try:
                fresh = _open_keyring(keyring.root_key, stored)
            except InvalidRequest:
                root_key = await self._physical.get(ROOT_KEY_PATH)
                if root_key is None:
                    raise InternalError("the keyring no longer opens and core/root-key is missing") from None
                fresh = _open_keyring(Key.from_dict(json.loads(self._decrypt(ROOT_KEY_PATH, root_key))).value, stored)
            self._check_not_resealed(seals)
            if fresh.active_term == keyring.active_term:
                self._encryptions = max(self._encryptions, fresh.active_key.encryptions)
            else:
                self._encryptions = fresh.active_key.encryptions
            self._keyring = fresh

    # --- internals -----------------------------------------------------------------------------------

    def _unsealed_keyring(self) -> Keyring:
        keyring = self._keyring
        if keyring is None:
            raise Sealed()
        return keyring

    def _now_ns(self) -> int:
        return round(self._clock.now() * 1_000_000) * 1000

    def _aead(self, keyring: Keyring, term: int) -> AESGCM | None:
        aead = self._aeads.get(term)
        if aead is None and term in keyring.keys:
            aead = self._aeads[term] = AESGCM(keyring.keys[term].value)
        return aead

    def _encrypt(self, path: str, value: bytes) -> bytes:
        keyring = self._unsealed_keyring()
        _check_entry(path, value)
        term = keyring.active_term
        ciphertext = encrypt_value(self._aead(keyring, term), term, path, value)
        self._encryptions += 1
        return ciphertext

    def _decrypt(self, path: str, stored: bytes) -> bytes:
        keyring = self._unsealed_keyring()  # again: the barrier may have been sealed during the read
        term = term_of(stored)
        aead = self._aead(keyring, term)
        if aead is None:
            raise InternalError(f"no decryption key available for term {term}")
        try:
            return decrypt_value(aead, path, stored)
        except InvalidTag:
            raise InternalError("decryption failed: message authentication failed") from None

    def _rotation_due(self) -> bool:
        if self._keyring is None:
            return False
        config = self._keyring.rotation_config
        # Vault skips every automatic rotation when disabled; the NIST bound here holds regardless.
        threshold = self._encryptions_max if config.disabled else min(self._encryptions_max, config.max_operations)
        return self._encryptions > threshold

    async def _rotate_if_due(self) -> None:
        """Rotate before the next encryption once the active term has exceeded its count."""
        if self._rotation_due():
            async with self._keyring_lock:
                if self._rotation_due():
                    await self._rotate_locked()

    async def _rotate_locked(self) -> int:
        keyring = self._unsealed_keyring()
        term = keyring.active_term + 1
        if term >= 2**32:
            raise InternalError("the keyring has used every term")
        key = Key(term=term, value=os.urandom(data_key_bytes), install_time_ns=self._now_ns())
        await self._persist(keyring.with_encryptions(self._encryptions).add_term(key))
        return term

    async def _persist(self, keyring: Keyring) -> None:
        """Write `keyring` and swap it in, unless the barrier was sealed meanwhile. Holds the keyring lock."""
        assert self._keyring_lock.locked()
        seals, active_term = self._seals, self._unsealed_keyring().active_term
        ops, stored = _keyring_ops(keyring)
        record_write(await self._physical.transaction(ops))
        self._check_not_resealed(seals)
        if stored.active_term == active_term:
            self._encryptions += 1  # core/root-key, written with it
        else:
            self._encryptions = stored.active_key.encryptions  # a new term starts its own count
        self._keyring = stored

    def _check_not_resealed(self, seals: int) -> None:
        if self._seals != seals:
            raise Sealed("the barrier was sealed while its keyring was being written")


def _keyring_ops(keyring: Keyring) -> tuple[list[Op], Keyring]:
    """The writes of one keyring persist, and the keyring as stored (counting the core/root-key encryption).

    core/keyring: the EncodedKeyring under the root key, term prefix 1, AAD "core/keyring".
    core/root-key: Vault's `Key{Term:1, Version:1, Value:rootKey}` under the active data key."""
    active = keyring.active_key
    root_entry = Key(term=INITIAL_TERM, value=keyring.root_key, install_time_ns=GO_ZERO_TIME_NS).to_dict()
    root_plaintext = json.dumps(root_entry, separators=(",", ":")).encode()
    root_ciphertext = encrypt_value(AESGCM(active.value), active.term, ROOT_KEY_PATH, root_plaintext)
    stored = keyring.with_encryptions(active.encryptions + 1)
    keyring_ciphertext = encrypt_value(AESGCM(keyring.root_key), INITIAL_TERM, KEYRING_PATH, stored.to_json())
    return [("put", KEYRING_PATH, keyring_ciphertext), ("put", ROOT_KEY_PATH, root_ciphertext)], stored
