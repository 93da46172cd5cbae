"""The seals: they guard the root key. Shamir (unseal-key shares) and auto seals (an HSM key; recovery keys).

As Vault ≥ 1.3 does, `initialize` makes two keys: the root key (which opens the barrier's keyring) and a
key-encryption key (KEK). The KEK is split into the unseal-key shares; the root key is stored at
`core/hsm/barrier-unseal-keys`, AES-GCM-wrapped by the KEK (`nonce ‖ ct ‖ tag`, no AAD). The seal config
at `core/seal-config` is plaintext JSON, since it is needed while sealed. Unsealing combines `threshold`
shares into the KEK, unwraps the root key and unseals the barrier; wrong shares fail the GCM tag, and the
progress starts over.

`AutoSeal` (PKCS#11, through a `SealWrapper` such as pkcs11_seal.Pkcs11Wrapper): the root key is stored at
`core/hsm/barrier-unseal-keys` encrypted by the HSM's AES key (AES-GCM inside the HSM, the path as AAD), so a
node unseals itself at start. The seal config says `pkcs11` with 1 share of 1. Recovery keys (Vault's): a
separate random key, split into the recovery shares, stored HSM-encrypted at `core/recovery-key`, described by
`core/recovery-config`. They never decrypt data; a threshold of them authorises generate-root, the recovery-key
rekey, an unseal after a manual seal, and seal migration.

Both seals answer the same quorum questions, which rekey and generate-root ask: `quorum_config()` (the shares
and threshold operators hold: unseal keys for Shamir, recovery keys for an auto seal), `verify_quorum(shares)`
(a Quorum, or InvalidRequest), and `quorum_ops(new_key, new_config, quorum)` (the writes that make new shares
the quorum). Key shares, KEKs and recovery keys never leave this module except as the shares `initialize` and a
rekey return.
"""

import asyncio
import base64
import dataclasses
import hmac
import json
import os
from collections.abc import Callable
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..sdk.errors import InternalError, InvalidRequest, NotInitialized
from . import shamir

SEAL_CONFIG_PATH = "core/seal-config"
STORED_KEYS_PATH = "core/hsm/barrier-unseal-keys"
RECOVERY_CONFIG_PATH = "core/recovery-config"
RECOVERY_KEY_PATH = "core/recovery-key"
key_bytes = 32
nonce_bytes = 12
shares_max = 255


@dataclasses.dataclass(frozen=True)
class SealConfig:
    type: str
    secret_shares: int
    secret_threshold: int

    def encode(self) -> bytes:
        return json.dumps(dataclasses.asdict(self)).encode()

    @classmethod
    def decode(cls, data: bytes) -> "SealConfig":
        fields = json.loads(data)
        return cls(fields["type"], fields["secret_shares"], fields["secret_threshold"])


def validate_shares(shares: int, threshold: int) -> None:
    """Vault's checks and messages for secret_shares / secret_threshold (all 400)."""
    if shares < 1:
        raise InvalidRequest("shares must be at least one")
    if threshold < 1:
        raise InvalidRequest("threshold must be at least one")
    if shares > 1 and threshold < 2:
        raise InvalidRequest("threshold must be greater than one for multiple shares")
    if shares > shares_max:
        raise InvalidRequest(f"shares must be less than {shares_max + 1}")
    if threshold > shares:
        raise InvalidRequest("threshold cannot be larger than shares")


class SealUnavailable(InternalError):
    """The HSM cannot be used now (missing library or token, wrong pin, deleted key); the message is one line."""


class SealWrapper(Protocol):
    """An HSM key that encrypts and decrypts small secrets (vaultd/core/pkcs11_seal.py). Blocking calls."""

    key_label: str

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes: ...

    def decrypt(self, blob: bytes, aad: bytes) -> bytes: ...

    @staticmethod
    def blob_key_label(blob: bytes) -> str: ...


@dataclasses.dataclass(frozen=True)
class Quorum:
    """What a threshold of shares proved: the combined key, the root key, and the stored blob a rekey
    replaces (compared before the commit, so a concurrent change makes the rekey refuse)."""

    key: bytes = dataclasses.field(repr=False)
    root_key: bytes = dataclasses.field(repr=False)
    replaces: bytes = dataclasses.field(repr=False)


def combine_shares(shares: list[bytes], threshold: int, failure: str) -> bytes:
    """The key from `threshold` shares; with a threshold of one the share is the key itself."""
    if threshold == 1:
        return shares[0]
    try:
        return shamir.combine(shares)
    except shamir.ShamirError as error:
        raise InvalidRequest(f"{failure}: {error}") from None


def split_key(key: bytes, shares: int, threshold: int, randbytes: Callable[[int], bytes]) -> list[bytes]:
    if shares == 1:
        return [key]
    return shamir.split(key, shares, threshold, randbelow=lambda bound: _random_below(randbytes, bound))


def _random_below(randbytes: Callable[[int], bytes], bound: int) -> int:
    """Uniform in [0, bound) from the injected source, by rejection, so a seeded test replays the same shares."""
    while True:
        value = randbytes(1)[0]
        if value < 256 - 256 % bound:
            return value % bound


def wrap_with_kek(kek: bytes, root_key: bytes, randbytes: Callable[[int], bytes]) -> bytes:
    nonce = randbytes(nonce_bytes)
    stored = json.dumps([base64.b64encode(root_key).decode()]).encode()
    return nonce + AESGCM(kek).encrypt(nonce, stored, None)


def unwrap_with_kek(kek: bytes, wrapped: bytes) -> bytes:
    if len(kek) != key_bytes:
        raise InvalidRequest("unseal failed, invalid key")
    try:
        stored = AESGCM(kek).decrypt(wrapped[:nonce_bytes], wrapped[nonce_bytes:], None)
    except InvalidTag:
        raise InvalidRequest("unseal failed, invalid key") from None
    return base64.b64decode(json.loads(stored)[0])


class UnsealProgress:
    """The shares submitted so far. A share given twice counts once, as in Vault."""

    def __init__(self, randbytes: Callable[[int], bytes]):
        self._randbytes = randbytes
        self.shares: list[bytes] = []
        self.nonce = ""

    def add(self, share: bytes) -> None:
        if not self.nonce:
            self.nonce = format_uuid(self._randbytes(16))
        if not any(hmac.compare_digest(share, existing) for existing in self.shares):
            self.shares.append(share)

    def reset(self) -> None:
        self.shares = []
        self.nonce = ""

    @property
    def progress(self) -> int:
        return len(self.shares)


class ShamirSeal:
    """Initialise and unseal. `barrier` provides initialize/unseal/seal/sealed and raw_get/raw_put."""

    type = "shamir"

    def __init__(self, barrier, randbytes: Callable[[int], bytes] = os.urandom):
        self.barrier = barrier
        self._randbytes = randbytes
        self.progress = UnsealProgress(randbytes)
        self.config: SealConfig | None = None

    async def load_config(self) -> SealConfig | None:
        raw = await self.barrier.raw_get(SEAL_CONFIG_PATH)
        self.config = SealConfig.decode(raw) if raw is not None else None
        return self.config

    async def initialize(self, shares: int, threshold: int) -> list[bytes]:
        """Make and store the keys; returns the unseal-key shares. The vault stays sealed."""
        validate_shares(shares, threshold)
        if await self.load_config() is not None:
            raise InvalidRequest("Vault is already initialized")
        root_key, kek = self._randbytes(key_bytes), self._randbytes(key_bytes)
        await self.barrier.initialize(root_key)
        await self.barrier.raw_put(STORED_KEYS_PATH, self.wrap_root_key(kek, root_key))
        config = SealConfig(self.type, shares, threshold)
        await self.barrier.raw_put(SEAL_CONFIG_PATH, config.encode())
        self.config = config
        return split_key(kek, shares, threshold, self._randbytes)

    async def submit(self, share: bytes) -> bool:
        """Add one share; at the threshold, try to unseal. Returns whether the vault is now unsealed."""
        config = self.config or await self.load_config()
        if config is None:
            raise NotInitialized()
        if not self.barrier.sealed:
            return True
        self.progress.add(share)
        if self.progress.progress < config.secret_threshold:
            return False
        shares = self.progress.shares
        self.progress.reset()
        try:
            kek = shares[0] if config.secret_threshold == 1 else shamir.combine(shares)
        except shamir.ShamirError as error:
            raise InvalidRequest(f"unseal failed, invalid key: {error}") from None
        root_key = await self.unwrap_root_key(kek)
        await self.barrier.unseal(root_key)
        return True

    def wrap_root_key(self, kek: bytes, root_key: bytes) -> bytes:
        return wrap_with_kek(kek, root_key, self._randbytes)

    async def unwrap_root_key(self, kek: bytes) -> bytes:
        wrapped = await self.barrier.raw_get(STORED_KEYS_PATH)
        if wrapped is None:
            raise InvalidRequest("unseal failed: no stored keys")
        return unwrap_with_kek(kek, wrapped)

    # --- the quorum: unseal-key shares ----------------------------------------------------------------

    def quorum_config(self) -> SealConfig | None:
        return self.config

    async def verify_quorum(self, shares: list[bytes]) -> Quorum:
        threshold = self.config.secret_threshold
        kek = combine_shares(shares, threshold, "failed to compute root key")
        wrapped = await self.barrier.raw_get(STORED_KEYS_PATH)  # read first: a later rewrite makes a commit refuse
        if wrapped is None:
            raise InternalError("the stored root key is missing")
        try:
            root_key = unwrap_with_kek(kek, wrapped)  # the GCM tag proves the KEK
        except InvalidRequest:
            raise InvalidRequest("root key verification failed: invalid key") from None
        return Quorum(kek, root_key, wrapped)

    async def quorum_ops(self, new_key: bytes, config: SealConfig, quorum: Quorum) -> tuple[str, list]:
        """(the path whose stored value must still be `quorum.replaces`, the ops that install `new_key`)."""
        return STORED_KEYS_PATH, [
            ("put", STORED_KEYS_PATH, self.wrap_root_key(new_key, quorum.root_key)),
            ("put", SEAL_CONFIG_PATH, config.encode()),
        ]


class AutoSeal:
    """The PKCS#11 auto seal; see the module doc. `wrapper` calls block, so they run in a worker thread."""

    type = "pkcs11"

    def __init__(self, barrier, wrapper: SealWrapper, randbytes: Callable[[int], bytes] = os.urandom):
        self.barrier = barrier
        self.wrapper = wrapper
        self._randbytes = randbytes
        self.progress = UnsealProgress(randbytes)  # recovery shares, after a manual seal
        self.config: SealConfig | None = None
        self.recovery_config: SealConfig | None = None

    async def load_config(self) -> SealConfig | None:
        raw = await self.barrier.raw_get(SEAL_CONFIG_PATH)
        self.config = SealConfig.decode(raw) if raw is not None else None
        recovery = await self.barrier.raw_get(RECOVERY_CONFIG_PATH)
        self.recovery_config = SealConfig.decode(recovery) if recovery is not None else None
        return self.config

    async def initialize(self, recovery_shares: int, recovery_threshold: int) -> list[bytes]:
        """Make the root key (stored HSM-encrypted) and the recovery key; returns the recovery shares."""
        validate_shares(recovery_shares, recovery_threshold)
        if await self.load_config() is not None:
            raise InvalidRequest("Vault is already initialized")
        root_key, recovery_key = self._randbytes(key_bytes), self._randbytes(key_bytes)
        stored_root = await self.encrypt_at(root_key, STORED_KEYS_PATH)  # the HSM first: a fault writes nothing
        stored_recovery = await self.encrypt_at(recovery_key, RECOVERY_KEY_PATH)
        await self.barrier.initialize(root_key)
        recovery_config = SealConfig("shamir", recovery_shares, recovery_threshold)
        config = SealConfig(self.type, 1, 1)
        await self.barrier.raw_transaction([
            ("put", STORED_KEYS_PATH, stored_root), ("put", RECOVERY_KEY_PATH, stored_recovery),
            ("put", RECOVERY_CONFIG_PATH, recovery_config.encode()), ("put", SEAL_CONFIG_PATH, config.encode()),
        ])
        self.config, self.recovery_config = config, recovery_config
        return split_key(recovery_key, recovery_shares, recovery_threshold, self._randbytes)

    async def root_key(self) -> bytes:
        """The root key, decrypted by the HSM (SealUnavailable when it cannot be reached)."""
        stored = await self.barrier.raw_get(STORED_KEYS_PATH)
        if stored is None:
            raise InvalidRequest("unseal failed: no stored keys")
        return await self.decrypt_at(stored, STORED_KEYS_PATH)

    async def unseal_with_hsm(self) -> None:
        await self.barrier.unseal(await self.root_key())

    async def submit(self, share: bytes) -> bool:
        """sys/unseal after a manual seal: recovery shares; at their threshold, unseal through the HSM."""
        config = self.config or await self.load_config()
        if config is None:
            raise NotInitialized()
        if not self.barrier.sealed:
            return True
        self.progress.add(share)
        if self.progress.progress < self.recovery_config.secret_threshold:
            return False
        shares = self.progress.shares
        self.progress.reset()
        await self.verify_quorum(shares)
        await self.unseal_with_hsm()
        return True

    # --- the quorum: recovery-key shares --------------------------------------------------------------

    def quorum_config(self) -> SealConfig | None:
        return self.recovery_config

    async def verify_quorum(self, shares: list[bytes]) -> Quorum:
        if self.recovery_config is None:
            await self.load_config()
        key = combine_shares(shares, self.recovery_config.secret_threshold, "failed to compute recovery key")
        stored = await self.barrier.raw_get(RECOVERY_KEY_PATH)
        if stored is None:
            raise InternalError("the stored recovery key is missing")
        expected = await self.decrypt_at(stored, RECOVERY_KEY_PATH)
        if not hmac.compare_digest(key, expected):
            raise InvalidRequest("recovery key verification failed: invalid key")
        return Quorum(key, b"", stored)

    async def quorum_ops(self, new_key: bytes, config: SealConfig, quorum: Quorum) -> tuple[str, list]:
        return RECOVERY_KEY_PATH, [
            ("put", RECOVERY_KEY_PATH, await self.encrypt_at(new_key, RECOVERY_KEY_PATH)),
            ("put", RECOVERY_CONFIG_PATH, dataclasses.replace(config, type="shamir").encode()),
        ]

    # --- the HSM ----------------------------------------------------------------------------------------

    async def encrypt_at(self, plaintext: bytes, path: str) -> bytes:
        """`plaintext` encrypted by the HSM for storage at `path` (the AAD)."""
        return await self._hsm(self.wrapper.encrypt, plaintext, path.encode())

    async def decrypt_at(self, blob: bytes, path: str) -> bytes:
        return await self._hsm(self.wrapper.decrypt, blob, path.encode())

    @staticmethod
    async def _hsm(operation, data: bytes, aad: bytes) -> bytes:
        try:
            return await asyncio.to_thread(operation, data, aad)
        except Exception as error:  # noqa: BLE001 - every HSM fault is reported the same way, in one line
            raise SealUnavailable(str(error).splitlines()[0] if str(error) else type(error).__name__) from None


def format_uuid(raw: bytes) -> str:
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:32]}"
