"""What transit keeps in its mount's view: one record per named key (Vault's keysutil Policy), holding every
version of the key's material.

Storage layout (the core's barrier encrypts every value; key material exists nowhere else):

    policy/<name>    UTF-8 JSON of a KeyPolicy: settings, latest_version, min_*_version, and for each version
                     its creation time (integer nanoseconds), its key material (base64) and its HMAC key

Vault also keeps `archive/<name>` for versions below min_decryption_version; here they stay in the one
record and are hidden the same way (`KeyPolicy.entry` refuses them), so raising min_decryption_version and
lowering it again gives them back, as Vault's archive does. A LIST of `keys/` is a LIST of `policy/`.
"""

import base64
import dataclasses
import datetime
import json
import math

from vaultd.sdk.errors import InvalidRequest
from vaultd.sdk.locks import KeyLocks  # noqa: F401 - re-exported for the handlers' signatures
from vaultd.sdk.storage import StorageView

policy_prefix = "policy/"
nanoseconds_per_second = 1_000_000_000
hmac_key_bytes = 32  # every version's HMAC key (keysutil's RotateInMemory)
hmac_type_key_bytes_min = 32  # keysutil's HmacMinKeySize
hmac_type_key_bytes_max = 512  # keysutil's HmacMaxKeySize
auto_rotate_period_seconds_min = 3600  # a non-zero auto_rotate_period is at least an hour
convergent_version_current = 3  # nonces from HMAC-SHA256 under a derived key (keysutil's currentConvergentVersion)

assert hmac_type_key_bytes_min <= hmac_key_bytes <= hmac_type_key_bytes_max


@dataclasses.dataclass(frozen=True)
class KeyType:
    """A key type's capabilities, as keysutil's KeyType methods answer them."""

    name: str
    family: str  # "aead", "rsa", "ecdsa", "ed25519" or "hmac"
    size: int = 0  # AEAD key bytes, RSA modulus bits or EC curve bits

    @property
    def supports_encryption(self) -> bool:
        return self.family in ("aead", "rsa")

    @property
    def supports_signing(self) -> bool:
        return self.family in ("rsa", "ecdsa", "ed25519")

    @property
    def supports_derivation(self) -> bool:
        return self.family in ("aead", "ed25519")

    @property
    def asymmetric(self) -> bool:
        return self.supports_signing


KEY_TYPES = {
    kind.name: kind
    for kind in (
        KeyType("aes128-gcm96", "aead", 16),
        KeyType("aes256-gcm96", "aead", 32),
        KeyType("chacha20-poly1305", "aead", 32),
        KeyType("ed25519", "ed25519"),
        KeyType("ecdsa-p256", "ecdsa", 256),
        KeyType("ecdsa-p384", "ecdsa", 384),
        KeyType("ecdsa-p521", "ecdsa", 521),
        KeyType("rsa-2048", "rsa", 2048),
        KeyType("rsa-3072", "rsa", 3072),
        KeyType("rsa-4096", "rsa", 4096),
        KeyType("hmac", "hmac"),
    )
}


@dataclasses.dataclass
class KeyVersion:
    created_at: int  # unix nanoseconds
    # The AEAD or HMAC key; for ed25519 Go's 64-byte private key (seed then public key); for ECDSA and RSA
    # the private key as PKCS#8 DER.
    key: bytes
    hmac_key: bytes  # for hmac/ and verify's hmac on every key type; a type hmac key MACs with `key` instead
    convergent_version: int = 0  # 3 when the policy is convergent, else 0


@dataclasses.dataclass
class KeyPolicy:
    """One named key. invariant: 1 <= min_decryption_version <= latest_version == max(versions), and
    min_encryption_version is 0 or in [min_decryption_version, latest_version]."""

    name: str
    type: str
    versions: dict[int, KeyVersion] = dataclasses.field(default_factory=dict)
    latest_version: int = 0
    min_decryption_version: int = 1
    min_encryption_version: int = 0
    deletion_allowed: bool = False
    exportable: bool = False
    allow_plaintext_backup: bool = False
    derived: bool = False  # keys come from HKDF-SHA256 over each request's context ("hkdf_sha256")
    convergent_encryption: bool = False
    auto_rotate_period: int = 0  # seconds; 0 disables
    key_size: int = 0  # bytes, for type hmac only
    backup_info: dict | None = None  # {"time": nanoseconds, "version": n} of the last backup
    restore_info: dict | None = None  # the same, of the restore that made this key

    @property
    def key_type(self) -> KeyType:
        return KEY_TYPES[self.type]

    def entry(self, version: int) -> KeyVersion:
        """A usable version. Those below min_decryption_version are withdrawn, as Vault archives them."""
        found = self.versions.get(version)
        if found is None or version < self.min_decryption_version:
            raise InvalidRequest("no such key version")
        return found

    def add_version(self, version: KeyVersion) -> None:
        self.latest_version += 1
        self.versions[self.latest_version] = version

    def encode(self) -> bytes:
        record = dataclasses.asdict(self)
        record["versions"] = {
            str(number): {**fields, "key": _b64(fields["key"]), "hmac_key": _b64(fields["hmac_key"])}
            for number, fields in record["versions"].items()
        }
        return json.dumps(record, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> "KeyPolicy":
        record = json.loads(raw)
        versions = {
            int(number): KeyVersion(**{**fields, "key": _unb64(fields["key"]), "hmac_key": _unb64(fields["hmac_key"])})
            for number, fields in record.pop("versions").items()
        }
        policy = cls(**record, versions=versions)
        policy.check()
        return policy

    def check(self) -> None:
        """The class invariant, for records read back or restored: a violation is corrupt input."""
        valid = (
            self.type in KEY_TYPES
            and self.latest_version >= 1
            and set(self.versions) == set(range(1, self.latest_version + 1))
            and 1 <= self.min_decryption_version <= self.latest_version
            and (self.min_encryption_version == 0
                 or self.min_decryption_version <= self.min_encryption_version <= self.latest_version)
        )
        if not valid:
            raise ValueError(f"invalid key record for {self.name!r}")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def policy_key(name: str) -> str:
    return policy_prefix + name


async def load_policy(storage: StorageView, name: str) -> KeyPolicy | None:
    raw = await storage.get(policy_key(name))
    return None if raw is None else KeyPolicy.decode(raw)


async def save_policy(storage: StorageView, policy: KeyPolicy) -> None:
    await storage.put(policy_key(policy.name), policy.encode())


async def policy_exists(storage: StorageView, name: str) -> bool:
    return await storage.get(policy_key(name)) is not None


async def delete_policy(storage: StorageView, name: str) -> None:
    await storage.delete(policy_key(name))


async def policy_names(storage: StorageView) -> list[str]:
    return [name for name in await storage.list(policy_prefix) if not name.endswith("/")]


def nanoseconds(unix_seconds: float) -> int:
    """`Request.received_at` as integer nanoseconds; the fraction is split off first so it rounds exactly."""
    whole = math.floor(unix_seconds)
    return whole * nanoseconds_per_second + round((unix_seconds - whole) * nanoseconds_per_second)


def format_time(stamp: int) -> str:
    """Go's time.Time in JSON (RFC 3339 with nanoseconds, trailing zeros dropped), in UTC."""
    seconds, fraction = divmod(stamp, nanoseconds_per_second)
    text = datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if fraction:
        text += "." + f"{fraction:09d}".rstrip("0")
    return text + "Z"
