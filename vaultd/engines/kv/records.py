"""What KV v2 keeps in its mount's view, and how those records look on the wire.

Storage layout (every value is UTF-8 JSON):

    config                  the mount's defaults: max_versions, cas_required, delete_version_after
    metadata/<path>         one KeyMetadata per secret: its settings, custom_metadata and, for every kept
                            version, created_time, deletion_time and destroyed
    versions/<path>/<n>     the data map of version n

A write puts two keys (the new version, then the metadata) and deletes one key per version trimmed past
max_versions. A version key splits at its last '/', so no two (path, n) pairs share one. LIST of
`metadata/<folder>/` is a LIST of the view's `metadata/<folder>/`. Times are stored as integer nanoseconds
since the epoch and `delete_version_after` as integer seconds, so nothing is lost to float rounding.
"""

import dataclasses
import datetime
import json
import math

from vaultd.sdk.errors import InternalError
from vaultd.sdk.locks import KeyLocks  # noqa: F401 - re-exported for the handlers' signatures
from vaultd.sdk.storage import StorageView

max_versions_default = 10  # Vault's defaultMaxVersions: kept when neither the secret nor the mount sets one
delete_version_after_disabled_seconds = -1  # the config's "never", as Vault stores any negative duration
nanoseconds_per_second = 1_000_000_000

assert max_versions_default > 0
assert delete_version_after_disabled_seconds < 0

config_key = "config"
metadata_prefix = "metadata/"
versions_prefix = "versions/"


def metadata_key(path: str) -> str:
    return metadata_prefix + path


def version_key(path: str, version: int) -> str:
    return f"{versions_prefix}{path}/{version}"


def nanoseconds(unix_seconds: float) -> int:
    """`Request.received_at` as integer nanoseconds; the fraction is split off first so it rounds exactly."""
    whole = math.floor(unix_seconds)
    return whole * nanoseconds_per_second + round((unix_seconds - whole) * nanoseconds_per_second)


def format_time(stamp: int | None) -> str:
    """Go's time.RFC3339Nano in UTC, as Vault prints it: trailing zeros of the fraction dropped; "" for unset."""
    if stamp is None:
        return ""
    seconds, fraction = divmod(stamp, nanoseconds_per_second)
    text = datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if fraction:
        text += "." + f"{fraction:09d}".rstrip("0")
    return text + "Z"


def format_duration(seconds: int) -> str:
    """Go's time.Duration.String() for whole seconds: "0s", "45s", "5m0s", "3h25m19s", "-1s"."""
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    hours, rest = divmod(abs(seconds), 3600)
    minutes, rest = divmod(rest, 60)
    if hours:
        return f"{sign}{hours}h{minutes}m{rest}s"
    if minutes:
        return f"{sign}{minutes}m{rest}s"
    return f"{sign}{rest}s"


@dataclasses.dataclass
class Config:
    max_versions: int = 0  # 0: max_versions_default
    cas_required: bool = False
    delete_version_after: int = 0  # seconds; 0: never, unless the secret sets one; negative: never, whatever it sets

    def wire(self) -> dict:
        return {
            "cas_required": self.cas_required,
            "delete_version_after": format_duration(self.delete_version_after),
            "max_versions": self.max_versions,
        }


@dataclasses.dataclass
class VersionMetadata:
    created_time: int
    deletion_time: int | None = None  # soft-deleted from this instant on; may lie in the future
    destroyed: bool = False  # its data is gone for good

    def deleted(self, now: int) -> bool:
        # Vault tests `deletion_time.Before(time.Now())`; here `now` is the request's own instant, and a
        # delete stamped at that instant has already happened.
        return self.deletion_time is not None and self.deletion_time <= now

    def readable(self, now: int) -> bool:
        return not self.destroyed and not self.deleted(now)

    def wire(self) -> dict:
        return {
            "created_time": format_time(self.created_time),
            "deletion_time": format_time(self.deletion_time),
            "destroyed": self.destroyed,
        }


@dataclasses.dataclass
class KeyMetadata:
    """One secret. invariant: every key of `versions` lies in [max(oldest_version, 1), current_version]."""

    created_time: int | None = None
    updated_time: int | None = None
    current_version: int = 0
    oldest_version: int = 0  # as in Vault, 0 until the first trim
    max_versions: int = 0  # 0: the mount's
    cas_required: bool = False
    delete_version_after: int = 0  # seconds; 0: the mount's
    custom_metadata: dict[str, str] | None = None  # None rather than {}, which Vault prints as null
    versions: dict[int, VersionMetadata] = dataclasses.field(default_factory=dict)

    def add_version(self, created_time: int, deletion_time: int | None, config: Config) -> list[int]:
        """Vault's AddVersion: append a version, then keep only the newest max(secret's, mount's)
        max_versions (10 when both are 0). Returns the dropped versions whose data is still stored."""
        self.current_version += 1
        self.versions[self.current_version] = VersionMetadata(created_time, deletion_time)
        self.updated_time = created_time
        if self.created_time is None:
            self.created_time = created_time
        kept = max(self.max_versions, config.max_versions) or max_versions_default
        if self.current_version - self.oldest_version < kept:
            return []
        last_dropped = self.current_version - kept
        dropped = sorted(version for version in self.versions if version <= last_dropped)
        stored = [version for version in dropped if not self.versions.pop(version).destroyed]
        self.oldest_version = last_dropped + 1
        return stored

    def version_wire(self, version: int) -> dict:
        """The metadata block of data reads and writes, in Vault's (sorted) key order."""
        record = self.versions[version]
        return {
            "created_time": format_time(record.created_time),
            "custom_metadata": self.custom_metadata,
            "deletion_time": format_time(record.deletion_time),
            "destroyed": record.destroyed,
            "version": version,
        }

    def wire(self) -> dict:
        return {
            "cas_required": self.cas_required,
            "created_time": format_time(self.created_time),
            "current_version": self.current_version,
            "custom_metadata": self.custom_metadata,
            "delete_version_after": format_duration(self.delete_version_after),
            "max_versions": self.max_versions,
            "oldest_version": self.oldest_version,
            "updated_time": format_time(self.updated_time),
            "versions": {str(version): self.versions[version].wire() for version in sorted(self.versions)},
        }


def deletion_time(created_time: int, config: Config, meta: KeyMetadata) -> int | None:
    """Vault's deletionTime: created + the smaller non-zero of the mount's and the secret's
    delete_version_after; None when both are 0 or the mount disables it."""
    if config.delete_version_after < 0:
        return None
    candidates = [after for after in (config.delete_version_after, meta.delete_version_after) if after > 0]
    if not candidates:
        return None
    return created_time + min(candidates) * nanoseconds_per_second


def encode(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def decode(raw: bytes) -> object:
    return json.loads(raw)


async def load_config(storage: StorageView) -> Config:
    raw = await storage.get(config_key)
    return Config() if raw is None else Config(**decode(raw))


async def save_config(storage: StorageView, config: Config) -> None:
    await storage.put(config_key, encode(dataclasses.asdict(config)))


async def load_metadata(storage: StorageView, path: str) -> KeyMetadata | None:
    raw = await storage.get(metadata_key(path)) if path else None
    if raw is None:
        return None
    record = decode(raw)
    versions = {int(number): VersionMetadata(**version) for number, version in record.pop("versions").items()}
    return KeyMetadata(**record, versions=versions)


async def save_metadata(storage: StorageView, path: str, meta: KeyMetadata) -> None:
    await storage.put(*metadata_op(path, meta)[1:])


def metadata_op(path: str, meta: KeyMetadata) -> tuple[str, str, bytes]:
    """The transaction op that stores `meta`."""
    # Shallow copies of the two plain dataclasses: what dataclasses.asdict gives, without its deep copy (a
    # profile of KV v2 writes found asdict's recursion among the larger costs of the request path).
    record = {**vars(meta), "versions": {number: vars(version) for number, version in meta.versions.items()}}
    return ("put", metadata_key(path), encode(record))


async def load_version(storage: StorageView, path: str, version: int) -> dict:
    raw = await storage.get(version_key(path, version))
    if raw is None:
        # every kept, undestroyed version has its data stored; storage that lost it is not to be trusted
        raise InternalError("could not find version data")
    return decode(raw)
