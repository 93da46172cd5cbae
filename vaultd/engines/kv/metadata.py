"""KV v2's settings: `metadata/<path>` (read, write, patch, delete, LIST of folders) and the mount's `config`.
Every setting is parsed and checked before anything is loaded or written."""

from vaultd.sdk.errors import InvalidRequest, NotFound
from vaultd.sdk.path import FieldData
from vaultd.sdk.request import Request, Response

from . import inputs
from .records import (
    Config,
    KeyLocks,
    KeyMetadata,
    delete_version_after_disabled_seconds,
    load_config,
    load_metadata,
    metadata_key,
    nanoseconds,
    save_config,
    save_metadata,
    version_key,
)

config_lock = ""  # no secret can be written at the empty path, so this lock is the config's alone
cas_required_ignored = '"cas_required" set to false, but is mandated by backend config. This value will be ignored.'


async def read_metadata(locks: KeyLocks, request: Request, fields: FieldData) -> Response:
    meta = await load_metadata(request.storage, fields.get("path"))
    if meta is None:
        raise NotFound()
    return Response(data=meta.wire())


async def list_metadata(locks: KeyLocks, request: Request, fields: FieldData) -> Response:
    """The secrets and folders (ending in '/') directly under `metadata/<folder>/`; NotFound when none."""
    folder = fields.get("path")
    prefix = folder if not folder or folder.endswith("/") else folder + "/"
    keys = await request.storage.list(metadata_key(prefix))
    if not keys:
        raise NotFound()
    return Response(data={"keys": keys})


async def write_metadata(locks: KeyLocks, request: Request, fields: FieldData) -> Response | None:
    """Set the given settings, creating the metadata (with no versions) if the secret does not exist yet.
    As in Vault, a write that names no setting changes nothing, and updated_time moves only with versions."""
    path = _settable_path(fields)
    settings = _settings(fields, patching=False)
    if not settings:
        return None
    warnings = _warnings(settings, await load_config(request.storage))
    async with locks.hold(path):
        meta = await load_metadata(request.storage, path)
        if meta is None:
            now = nanoseconds(request.received_at)
            meta = KeyMetadata(created_time=now, updated_time=now)
        for name, value in settings.items():
            setattr(meta, name, value)
        meta.custom_metadata = meta.custom_metadata or None
        await save_metadata(request.storage, path, meta)
    return Response(warnings=warnings) if warnings else None


async def patch_metadata(locks: KeyLocks, request: Request, fields: FieldData) -> Response | None:
    """Set the given settings of an existing secret; custom_metadata is merge-patched (null removes a key)."""
    path = _settable_path(fields)
    settings = _settings(fields, patching=True)
    config = await load_config(request.storage)
    async with locks.hold(path):
        meta = await load_metadata(request.storage, path)
        if meta is None:
            raise NotFound()
        warnings = _warnings(settings, config)
        for name, value in settings.items():
            if name == "custom_metadata":
                value = inputs.merge_patch(meta.custom_metadata or {}, value) or None
            setattr(meta, name, value)
        if settings:
            await save_metadata(request.storage, path, meta)
    return Response(warnings=warnings) if warnings else None


async def delete_metadata(locks: KeyLocks, request: Request, fields: FieldData) -> None:
    """Every version's data, then the metadata: the secret is gone with its history."""
    path = fields.get("path")
    async with locks.hold(path):
        meta = await load_metadata(request.storage, path)
        if meta is None:
            return None
        for number, record in sorted(meta.versions.items()):
            if not record.destroyed:
                await request.storage.delete(version_key(path, number))
        await request.storage.delete(metadata_key(path))
    return None


def _settable_path(fields: FieldData) -> str:
    path = fields.get("path")
    if not path:
        raise InvalidRequest("missing path")
    if path.endswith("/"):
        raise InvalidRequest(f"invalid path {path!r}: a secret's path cannot end in '/'")
    return path


def _settings(fields: FieldData, patching: bool) -> dict:
    """The settings the request names, checked, as KeyMetadata attributes."""
    settings = {}
    for name in ("max_versions", "delete_version_after"):
        if fields.provided(name):
            settings[name] = inputs.non_negative(name, fields.get(name))
    if fields.provided("cas_required"):
        settings["cas_required"] = fields.get("cas_required")
    if fields.provided("custom_metadata"):
        settings["custom_metadata"] = inputs.custom_metadata(fields.get("custom_metadata"), patching)
    return settings


def _warnings(settings: dict, config: Config) -> list[str]:
    return [cas_required_ignored] if settings.get("cas_required") is False and config.cas_required else []


async def read_config(locks: KeyLocks, request: Request, fields: FieldData) -> Response:
    return Response(data=(await load_config(request.storage)).wire())


async def write_config(locks: KeyLocks, request: Request, fields: FieldData) -> None:
    """Set the mount's defaults. A negative delete_version_after disables it for every secret; 0 clears it."""
    settings = {}
    if fields.provided("max_versions"):
        settings["max_versions"] = inputs.non_negative("max_versions", fields.get("max_versions"))
    if fields.provided("cas_required"):
        settings["cas_required"] = fields.get("cas_required")
    if fields.provided("delete_version_after"):
        after = inputs.signed_duration("delete_version_after", fields.get("delete_version_after"))
        settings["delete_version_after"] = max(after, delete_version_after_disabled_seconds)
    if not settings:
        return None
    async with locks.hold(config_lock):
        config = await load_config(request.storage)
        for name, value in settings.items():
            setattr(config, name, value)
        await save_config(request.storage, config)
    return None
