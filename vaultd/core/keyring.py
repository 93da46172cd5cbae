"""The barrier's keyring in Vault's EncodedKeyring JSON: terms of 32-byte AES keys, the root key, and the
rotation config, with Go's RFC3339Nano times. Pure data and (de)serialisation; the barrier encrypts it."""

import base64
import dataclasses
import datetime
import json
import re
from collections.abc import Mapping

from vaultd import limits
from vaultd.sdk.errors import InternalError

# Vault's KeyRotationConfig bounds (keyring.go): Sanitize clamps a stored config into them.
rotation_operations_min = 1_000_000
rotation_interval_seconds_min = 24 * 3600
data_key_bytes = 32
KEY_SIZES_BYTES = (16, 24, 32)  # what AES accepts; data keys are always 32

assert rotation_operations_min < limits.encryptions_per_term_max < 2**32

# --- time in Go's JSON form ----------------------------------------------------------------------------

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)")


def format_rfc3339(ns: int) -> str:
    """Go's RFC3339Nano in UTC (what `json.Marshal(time.Time)` writes): the fraction loses trailing zeros."""
    seconds, fraction = divmod(ns, 10**9)
    t = _EPOCH + datetime.timedelta(seconds=seconds)
    text = f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    if fraction:
        text += "." + f"{fraction:09d}".rstrip("0")
    return text + "Z"


def parse_rfc3339(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time with any fraction up to 9 digits and any offset."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    whole, fraction, zone = match.groups()
    delta = datetime.datetime.fromisoformat(whole + zone) - _EPOCH  # fromisoformat would drop the nanoseconds
    return (delta.days * 86400 + delta.seconds) * 10**9 + int((fraction or "0").ljust(9, "0"))


GO_ZERO_TIME_NS = parse_rfc3339("0001-01-01T00:00:00Z")  # time.Time{}: the InstallTime of core/root-key


# --- the keyring ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Key:
    """One term's data key. `encryptions` counts what this key encrypted, as last persisted."""

    term: int
    value: bytes = dataclasses.field(repr=False)
    install_time_ns: int
    encryptions: int = 0
    version: int = 1  # always 1 in Vault

    def to_dict(self) -> dict:
        entry = {
            "Term": self.term,
            "Version": self.version,
            "Value": base64.b64encode(self.value).decode("ascii"),
            "InstallTime": format_rfc3339(self.install_time_ns),
        }
        if self.encryptions:  # Go: `json:"encryptions,omitempty"`
            entry["encryptions"] = self.encryptions
        return entry

    @classmethod
    def from_dict(cls, obj: object) -> "Key":
        fields = _fields(obj, "key")
        return cls(
            term=_uint(fields.get("term"), "Term", 2**32 - 1, minimum=1),
            value=_key_bytes(fields.get("value"), "Value"),
            install_time_ns=parse_rfc3339(str(fields.get("installtime", "0001-01-01T00:00:00Z"))),
            encryptions=_uint(fields.get("encryptions", 0), "encryptions", 2**64 - 1),
            version=_uint(fields.get("version", 1), "Version", 2**31),
        )


@dataclasses.dataclass(frozen=True)
class RotationConfig:
    """Vault's KeyRotationConfig: when the barrier rotates on its own (`sys/rotate/config`)."""

    disabled: bool = False
    max_operations: int = limits.encryptions_per_term_max
    interval_ns: int = 0  # 0: no rotation by age

    def sanitized(self) -> "RotationConfig":
        """Clamped into Vault's bounds, as Vault's Sanitize does on every load."""
        operations = self.max_operations
        if operations == 0 or operations > limits.encryptions_per_term_max:
            operations = limits.encryptions_per_term_max
        interval_min_ns = rotation_interval_seconds_min * 10**9
        interval = interval_min_ns if 0 < self.interval_ns < interval_min_ns else self.interval_ns
        return RotationConfig(self.disabled, max(operations, rotation_operations_min), interval)


@dataclasses.dataclass(frozen=True)
class Keyring:
    """The root key and the data-key terms. Immutable: each change returns a new keyring, as Vault's does."""

    # invariant: every term in `keys` is its key's `term`; the active term is the highest

    root_key: bytes = dataclasses.field(repr=False)
    keys: Mapping[int, Key] = dataclasses.field(default_factory=dict)
    rotation_config: RotationConfig = RotationConfig()

    @property
    def active_term(self) -> int:
        return max(self.keys, default=0)

    @property
    def active_key(self) -> Key:
        return self.keys[self.active_term]

    def add_term(self, key: Key) -> "Keyring":
        """Install `key`; the same key again is a no-op, a different key for a known term is refused."""
        existing = self.keys.get(key.term)
        if existing is not None:
            if existing.value != key.value:
                raise InternalError(f"conflicting key for term {key.term} already installed")
            return self
        keys = {**self.keys, key.term: key}
        active = max(keys)
        # As Vault's AddKey: only the active term's count matters, so retired terms are zeroed.
        keys = {term: k if term == active else dataclasses.replace(k, encryptions=0) for term, k in keys.items()}
        return dataclasses.replace(self, keys=keys)

    def with_root_key(self, root_key: bytes) -> "Keyring":
        return dataclasses.replace(self, root_key=bytes(root_key))

    def with_encryptions(self, encryptions: int) -> "Keyring":
        """The keyring with the active term's persisted count set to `encryptions`."""
        active = dataclasses.replace(self.active_key, encryptions=encryptions)
        return dataclasses.replace(self, keys={**self.keys, active.term: active})

    def to_json(self) -> bytes:
        """Vault's EncodedKeyring: `[]byte` as base64, times as RFC 3339, Interval in nanoseconds."""
        config = self.rotation_config
        encoded = {
            "MasterKey": base64.b64encode(self.root_key).decode("ascii"),
            "Keys": [self.keys[term].to_dict() for term in sorted(self.keys)],
            "RotationConfig": {
                "Disabled": config.disabled,
                "MaxOperations": config.max_operations,
                "Interval": config.interval_ns,
            },
        }
        return json.dumps(encoded, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "Keyring":
        """Parse an EncodedKeyring. Field names match case-insensitively, as Go's decoder does."""
        try:
            fields = _fields(json.loads(data), "keyring")
            config = _fields(fields.get("rotationconfig") or {}, "RotationConfig")
            keys = [Key.from_dict(entry) for entry in fields.get("keys") or []]
            rotation = RotationConfig(
                disabled=bool(config.get("disabled", False)),
                max_operations=_uint(config.get("maxoperations", 0), "MaxOperations", 2**63 - 1),
                interval_ns=_uint(config.get("interval", 0), "Interval", 2**63 - 1),
            )
            keyring = cls(_key_bytes(fields.get("masterkey"), "MasterKey"), {}, rotation.sanitized())
        except (ValueError, TypeError, OverflowError) as error:
            raise InternalError(f"keyring deserialization failed: {error}") from None
        for key in keys:
            keyring = keyring.add_term(key)
        if not keyring.keys:
            raise InternalError("keyring deserialization failed: no keys")
        return keyring


def _fields(obj: object, what: str) -> dict:
    if not isinstance(obj, dict):
        raise ValueError(f"{what} is not a JSON object")
    return {name.lower(): value for name, value in obj.items()}


def _uint(value: object, name: str, maximum: int, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ValueError(f"{name} must be an integer in [{minimum}, {maximum}], not {value!r}")
    return value


def _key_bytes(value: object, name: str) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a base64 string")
    key = base64.b64decode(value, validate=True)
    if len(key) not in KEY_SIZES_BYTES:
        raise ValueError(f"{name} is {len(key)} bytes, not 16, 24 or 32")
    return key
