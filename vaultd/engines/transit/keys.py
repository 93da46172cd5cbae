"""The life of a named key: `keys/` (list), `keys/<name>` (create, read, delete), `keys/<name>/config`,
`keys/<name>/rotate` and `export/<type>/<name>[/<version>]`. Writers take the key's lock (bound by paths.py)
for their whole read-modify-write, and check everything a request can get wrong before they write."""

import dataclasses

from vaultd.sdk.errors import InvalidRequest, NotFound
from vaultd.sdk.path import FieldData
from vaultd.sdk.request import Request, Response

from . import material
from .inputs import base64_field, go_atoi
from .policy import (
    KEY_TYPES,
    KeyLocks,
    KeyPolicy,
    auto_rotate_period_seconds_min,
    delete_policy,
    format_time,
    hmac_key_bytes,
    hmac_type_key_bytes_max,
    hmac_type_key_bytes_min,
    load_policy,
    nanoseconds,
    policy_names,
    save_policy,
)

EXPORT_TYPES = ("encryption-key", "signing-key", "hmac-key", "public-key")


@dataclasses.dataclass(frozen=True)
class KeySettings:
    """What a new key is made with (from keys/<name>, or from encrypt/<name> when it creates the key)."""

    type: str = "aes256-gcm96"
    derived: bool = False
    convergent_encryption: bool = False
    exportable: bool = False
    allow_plaintext_backup: bool = False
    auto_rotate_period: int = 0
    key_size: int = 0


def check_auto_rotate_period(seconds: int) -> int:
    if seconds != 0 and seconds < auto_rotate_period_seconds_min:
        raise InvalidRequest("auto rotate period must be 0 to disable or at least an hour")
    return seconds


def check_new_key(settings: KeySettings) -> None:
    """keysutil's GetPolicy checks before it makes a key: what each type cannot be."""
    kind = KEY_TYPES[settings.type]
    if kind.family == "aead":
        if settings.convergent_encryption and not settings.derived:
            raise InvalidRequest("convergent encryption requires derivation to be enabled")
    elif kind.family == "ed25519":
        if settings.convergent_encryption:
            raise InvalidRequest(f"convergent encryption not supported for keys of type {kind.name}")
    elif settings.derived or settings.convergent_encryption:
        raise InvalidRequest(f"key derivation and convergent encryption not supported for keys of type {kind.name}")


def new_policy(name: str, settings: KeySettings, now: int) -> KeyPolicy:
    """A checked key's first version (keysutil's GetPolicy with Upsert, then Rotate)."""
    kind = KEY_TYPES[settings.type]
    key_size = (settings.key_size or hmac_key_bytes) if kind.family == "hmac" else 0
    policy = KeyPolicy(
        name=name, type=settings.type, derived=settings.derived,
        convergent_encryption=settings.convergent_encryption, exportable=settings.exportable,
        allow_plaintext_backup=settings.allow_plaintext_backup,
        auto_rotate_period=settings.auto_rotate_period, key_size=key_size,
    )
    policy.add_version(material.new_version(kind, key_size, now, settings.convergent_encryption))
    return policy


def key_info(policy: KeyPolicy, context: bytes = b"") -> dict:
    """Vault's formatKeyPolicy: the key's settings and, per version still usable, its creation time (or,
    for asymmetric keys, its public key)."""
    kind = policy.key_type
    data: dict = {
        "name": policy.name, "type": policy.type, "derived": policy.derived,
        "deletion_allowed": policy.deletion_allowed, "min_available_version": 0,
        "min_decryption_version": policy.min_decryption_version,
        "min_encryption_version": policy.min_encryption_version, "latest_version": policy.latest_version,
        "exportable": policy.exportable, "allow_plaintext_backup": policy.allow_plaintext_backup,
        "supports_encryption": kind.supports_encryption, "supports_decryption": kind.supports_encryption,
        "supports_signing": kind.supports_signing, "supports_derivation": kind.supports_derivation,
        "auto_rotate_period": policy.auto_rotate_period, "imported_key": False,
    }
    if policy.key_size:
        data["key_size"] = policy.key_size
    for name in ("backup_info", "restore_info"):
        info = getattr(policy, name)
        if info is not None:
            data[name] = {"time": format_time(info["time"]), "version": info["version"]}
    if policy.derived:
        data["kdf"] = "hkdf_sha256"
        data["convergent_encryption"] = policy.convergent_encryption
        if policy.convergent_encryption:
            data["convergent_encryption_version"] = -1  # keysutil's "each version carries its own"
    usable = {number: entry for number, entry in policy.versions.items() if number >= policy.min_decryption_version}
    if kind.family == "aead":
        data["keys"] = {str(number): entry.created_at // 1_000_000_000 for number, entry in usable.items()}
    elif kind.asymmetric:
        data["keys"] = {str(number): {
            "name": material.public_key_name(kind),
            "public_key": material.public_key_text(policy, entry, context),
            "certificate_chain": "",
            "creation_time": format_time(entry.created_at),
        } for number, entry in usable.items()}
    return dict(sorted(data.items()))


async def list_keys(locks: KeyLocks, request: Request, fields: FieldData) -> Response:
    names = await policy_names(request.storage)
    if not names:
        raise NotFound()
    return Response(data={"keys": names})


def _creation_settings(fields: FieldData) -> KeySettings:
    """pathPolicyWrite's checks, in its order; those of check_new_key apply only once the key is new."""
    settings = KeySettings(**{field.name: fields.get(field.name) for field in dataclasses.fields(KeySettings)})
    check_auto_rotate_period(settings.auto_rotate_period)
    if settings.convergent_encryption and not settings.derived:
        raise InvalidRequest("convergent encryption requires derivation to be enabled")
    if settings.type not in KEY_TYPES:
        raise InvalidRequest(f"unknown key type {settings.type}")
    if settings.key_size != 0:
        if settings.type != "hmac":
            raise InvalidRequest(f"key_size is not valid for algorithm {settings.type}")
        if not hmac_type_key_bytes_min <= settings.key_size <= hmac_type_key_bytes_max:
            raise InvalidRequest(f"invalid key_size {settings.key_size}")
    return settings


async def create_key(locks: KeyLocks, request: Request, fields: FieldData) -> Response:
    """Make the key; one that exists already is left as it is, and answered with a warning."""
    name = fields.get("name")
    settings = _creation_settings(fields)
    async with locks.hold(name):
        existing = await load_policy(request.storage, name)
        if existing is not None:
            return Response(data=key_info(existing), warnings=[f"key {name} already existed"])
        check_new_key(settings)
        policy = new_policy(name, settings, nanoseconds(request.received_at))
        await save_policy(request.storage, policy)
    return Response(data=key_info(policy))


async def read_key(locks: KeyLocks, request: Request, fields: FieldData) -> Response:
    policy = await load_policy(request.storage, fields.get("name"))
    if policy is None:
        raise NotFound()
    context = base64_field(fields.get("context") or "", "failed to base64-decode context")
    return Response(data=key_info(policy, context))


async def delete_key(locks: KeyLocks, request: Request, fields: FieldData) -> None:
    name = fields.get("name")
    async with locks.hold(name):
        policy = await load_policy(request.storage, name)
        if policy is None:
            raise InvalidRequest(f"error deleting policy {name}: could not delete key; not found")
        if not policy.deletion_allowed:
            raise InvalidRequest(f"error deleting policy {name}: deletion is not allowed for this key")
        await delete_policy(request.storage, name)
    return None


async def rotate_key(locks: KeyLocks, request: Request, fields: FieldData) -> Response:
    name = fields.get("name")
    async with locks.hold(name):
        policy = await load_policy(request.storage, name)
        if policy is None:
            raise InvalidRequest("key not found")
        version = material.new_version(policy.key_type, policy.key_size, nanoseconds(request.received_at),
                                       policy.convergent_encryption)
        policy.add_version(version)
        await save_policy(request.storage, policy)
    return Response(data=key_info(policy))


async def configure_key(locks: KeyLocks, request: Request, fields: FieldData) -> Response:
    """pathKeysConfigWrite: change the given settings, refusing (and changing nothing) if any is invalid.
    exportable and allow_plaintext_backup can be turned on, never off."""
    name = fields.get("name")
    async with locks.hold(name):
        policy = await load_policy(request.storage, name)
        if policy is None:
            raise InvalidRequest(f"no existing key named {name} could be found")
        changed, warnings = _configured(policy, fields)
        if changed != policy:
            await save_policy(request.storage, changed)
    return Response(data=key_info(changed), warnings=warnings)


def _configured(policy: KeyPolicy, fields: FieldData) -> tuple[KeyPolicy, list[str]]:
    changes: dict = {}
    warnings = []
    if fields.provided("min_decryption_version"):
        wanted = fields.get("min_decryption_version")
        if wanted < 0:
            raise InvalidRequest("min decryption version cannot be negative")
        if wanted == 0:
            wanted = 1
            warnings.append("since Vault 0.3, transit key numbering starts at 1; forcing minimum to 1")
        if wanted != policy.min_decryption_version and wanted > policy.latest_version:
            raise InvalidRequest(f"cannot set min decryption version of {wanted}, "
                                 f"latest key version is {policy.latest_version}")
        changes["min_decryption_version"] = wanted
    if fields.provided("min_encryption_version"):
        wanted = fields.get("min_encryption_version")
        if wanted < 0:
            raise InvalidRequest("min encryption version cannot be negative")
        if wanted != policy.min_encryption_version and wanted > policy.latest_version:
            raise InvalidRequest(f"cannot set min encryption version of {wanted}, "
                                 f"latest key version is {policy.latest_version}")
        changes["min_encryption_version"] = wanted
    changed = dataclasses.replace(policy, **changes)
    if 0 < changed.min_encryption_version < changed.min_decryption_version:
        raise InvalidRequest(
            "cannot set min encryption/decryption values; min encryption version of "
            f"{changed.min_encryption_version} must be greater than or equal to min decryption version of "
            f"{changed.min_decryption_version}")
    if fields.provided("deletion_allowed"):
        changed.deletion_allowed = fields.get("deletion_allowed")
    changed.exportable = changed.exportable or bool(fields.get("exportable"))
    changed.allow_plaintext_backup = changed.allow_plaintext_backup or bool(fields.get("allow_plaintext_backup"))
    if fields.provided("auto_rotate_period"):
        changed.auto_rotate_period = check_auto_rotate_period(fields.get("auto_rotate_period"))
    return changed, warnings


async def export_key(locks: KeyLocks, request: Request, fields: FieldData) -> Response:
    """pathPolicyExportRead. Public keys are exported whatever `exportable` says; private material only
    from an exportable key."""
    export_type, name, version_text = fields.get("type"), fields.get("name"), fields.get("version")
    if export_type not in EXPORT_TYPES:
        raise InvalidRequest(f"invalid export type: {export_type}")
    policy = await load_policy(request.storage, name)
    if policy is None:
        raise NotFound()
    kind = policy.key_type
    if not policy.exportable and export_type != "public-key":
        raise InvalidRequest("private key material is not exportable")
    if export_type == "encryption-key" and not kind.supports_encryption:
        raise InvalidRequest("encryption not supported for the key")
    if export_type == "signing-key" and not kind.supports_signing:
        raise InvalidRequest("signing not supported for the key")
    numbers = [number for number in policy.versions if number >= policy.min_decryption_version]
    if version_text:
        numbers = [_export_version(policy, version_text)]
    keys = {str(number): material.export_text(policy, policy.versions[number], export_type) for number in numbers}
    return Response(data={"keys": keys, "name": policy.name, "type": policy.type})


def _export_version(policy: KeyPolicy, text: str) -> int:
    number = policy.latest_version if text == "latest" else go_atoi(text.removeprefix("v"))
    if number is None:
        raise InvalidRequest("invalid key version")
    if number < policy.min_decryption_version:
        raise InvalidRequest("version for export is below minimum decryption version")
    if number not in policy.versions:
        raise InvalidRequest("version does not exist or cannot be found")
    return number
