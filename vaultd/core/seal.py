"""The Shamir seal: it guards the root key, and unseal progress collects key shares until the threshold.

As Vault ≥ 1.3 does, `initialize` makes two keys: the root key (which opens the barrier's keyring) and a
key-encryption key (KEK). The KEK is split into the unseal-key shares; the root key is stored at
`core/hsm/barrier-unseal-keys`, AES-GCM-wrapped by the KEK (`nonce ‖ ct ‖ tag`, no AAD). The seal config
at `core/seal-config` is plaintext JSON, since it is needed while sealed. Unsealing combines `threshold`
shares into the KEK, unwraps the root key and unseals the barrier; wrong shares fail the GCM tag, and the
progress starts over.

Key shares and the KEK never leave this module except as the shares returned by `initialize`.
"""

import base64
import dataclasses
import hmac
import json
import os
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..sdk.errors import InvalidRequest, NotInitialized
from . import shamir

SEAL_CONFIG_PATH = "core/seal-config"
STORED_KEYS_PATH = "core/hsm/barrier-unseal-keys"
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
        if shares == 1:
            return [kek]
        return shamir.split(kek, shares, threshold, randbelow=self._randbelow)

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
        nonce = self._randbytes(nonce_bytes)
        stored = json.dumps([base64.b64encode(root_key).decode()]).encode()
        return nonce + AESGCM(kek).encrypt(nonce, stored, None)

    async def unwrap_root_key(self, kek: bytes) -> bytes:
        wrapped = await self.barrier.raw_get(STORED_KEYS_PATH)
        if wrapped is None:
            raise InvalidRequest("unseal failed: no stored keys")
        if len(kek) != key_bytes:
            raise InvalidRequest("unseal failed, invalid key")
        try:
            stored = AESGCM(kek).decrypt(wrapped[:nonce_bytes], wrapped[nonce_bytes:], None)
        except InvalidTag:
            raise InvalidRequest("unseal failed, invalid key") from None
        return base64.b64decode(json.loads(stored)[0])

    def _randbelow(self, bound: int) -> int:
        # rejection sampling over the injected source, so a seeded test replays the same shares
        while True:
            value = self._randbytes(1)[0]
            if value < 256 - 256 % bound:
                return value % bound


def format_uuid(raw: bytes) -> str:
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:32]}"
