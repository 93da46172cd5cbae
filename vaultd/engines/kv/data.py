"""KV v2's versions of a secret: `data/<path>` (read, write, patch, soft delete), `delete/`, `undelete/`,
`destroy/` and `subkeys/`. Each handler takes the secret's lock first (`locks`, bound by v2.py) and holds it
for its whole read-modify-write; everything a request can get wrong is checked before the first write."""

from collections.abc import Callable

from vaultd.sdk.errors import InvalidRequest, NotFound
from vaultd.sdk.path import FieldData
from vaultd.sdk.request import Request, Response

from . import inputs
from .records import (
    Config,
    KeyLocks,
    KeyMetadata,
    VersionMetadata,
    deletion_time,
    encode,
    load_config,
    load_metadata,
    load_version,
    metadata_op,
    nanoseconds,
    save_metadata,
    version_key,
)


async def read_data(locks: KeyLocks, request: Request, fields: FieldData) -> Response:
    path = fields.get("path")
    async with locks.hold(path):
        meta, version = await _readable_version(request, path, fields.get("version"), "data")
        data = await load_version(request.storage, path, version)
    return Response(data={"data": data, "metadata": meta.version_wire(version)})


async def read_subkeys(locks: KeyLocks, request: Request, fields: FieldData) -> Response:
    path, depth = fields.get("path"), fields.get("depth")
    if depth < 0:
        raise InvalidRequest("depth must be a non-negative integer")
    async with locks.hold(path):
        meta, version = await _readable_version(request, path, fields.get("version"), "subkeys")
        data = await load_version(request.storage, path, version)
    return Response(data={"metadata": meta.version_wire(version), "subkeys": inputs.subkeys(data, depth)})


async def _readable_version(request: Request, path: str, asked: int, body_key: str) -> tuple[KeyMetadata, int]:
    """The secret's metadata and the version a read names (`asked` if positive, else the current one).
    A missing secret or version is a bare NotFound; a deleted or destroyed one is a NotFound carrying Vault's
    body, `{body_key: null, "metadata": {...}}`, which tells clients such as hvac it was deleted."""
    meta = await load_metadata(request.storage, path)
    if meta is None:
        raise NotFound()
    version = asked if asked > 0 else meta.current_version
    record = meta.versions.get(version)
    if record is None:
        raise NotFound()
    if not record.readable(nanoseconds(request.received_at)):
        raise NotFound(data={body_key: None, "metadata": meta.version_wire(version)})
    return meta, version


async def write_data(locks: KeyLocks, request: Request, fields: FieldData) -> Response:
    path = fields.get("path")
    config = await load_config(request.storage)
    if not fields.provided("data"):
        raise InvalidRequest("no data provided")
    async with locks.hold(path):
        meta = await load_metadata(request.storage, path) or KeyMetadata()
        inputs.check_and_set(fields.get("options") or {}, config.cas_required or meta.cas_required,
                             meta.current_version)
        version = await _append_version(request, path, meta, config, fields.get("data"))
    return Response(data=meta.version_wire(version))


async def patch_data(locks: KeyLocks, request: Request, fields: FieldData) -> Response:
    """A JSON merge patch of `data` onto the current version, stored as a new version."""
    path = fields.get("path")
    if not fields.provided("data"):
        raise InvalidRequest("no data provided")
    async with locks.hold(path):
        meta = await load_metadata(request.storage, path)
        if meta is None:
            raise NotFound()
        config = await load_config(request.storage)
        inputs.check_and_set(fields.get("options") or {}, config.cas_required or meta.cas_required,
                             meta.current_version)
        current = meta.versions.get(meta.current_version)
        if current is None:
            raise NotFound()
        if not current.readable(nanoseconds(request.received_at)):
            # unlike a read, Vault's patch answers with the bare metadata block
            raise NotFound(data=meta.version_wire(meta.current_version))
        existing = await load_version(request.storage, path, meta.current_version)
        patched = inputs.merge_patch(existing, fields.get("data"))
        version = await _append_version(request, path, meta, config, patched)
    return Response(data=meta.version_wire(version))


async def _append_version(request: Request, path: str, meta: KeyMetadata, config: Config, data: dict) -> int:
    """Store `data` as the next version with the metadata naming it, and drop what max_versions no longer
    keeps: one atomic transaction (one raft entry), so no crash leaves metadata naming missing data."""
    now = nanoseconds(request.received_at)
    new_version = ("put", version_key(path, meta.current_version + 1), encode(data))
    dropped = meta.add_version(now, deletion_time(now, config, meta), config)
    await request.storage.transaction([new_version, metadata_op(path, meta),
                                       *[("delete", version_key(path, version), None) for version in dropped]])
    return meta.current_version


async def delete_latest(locks: KeyLocks, request: Request, fields: FieldData) -> None:
    """Soft delete of the current version; nothing to do when it is already deleted or destroyed."""
    path, now = fields.get("path"), nanoseconds(request.received_at)
    async with locks.hold(path):
        meta = await load_metadata(request.storage, path)
        latest = meta.versions.get(meta.current_version) if meta else None
        if latest is None or not latest.readable(now):
            return None
        latest.deletion_time = now
        await save_metadata(request.storage, path, meta)
    return None


async def delete_versions(locks: KeyLocks, request: Request, fields: FieldData) -> None:
    path, numbers = fields.get("path"), _versions(fields, "No version number provided")
    now = nanoseconds(request.received_at)
    async with locks.hold(path):
        meta = await load_metadata(request.storage, path)
        chosen = _present(meta, numbers, lambda record: record.readable(now))
        for record in chosen:
            record.deletion_time = now
        if chosen:
            await save_metadata(request.storage, path, meta)
    return None


async def undelete_versions(locks: KeyLocks, request: Request, fields: FieldData) -> None:
    """Clear the deletion of each version not destroyed; a delete_version_after in force starts again now."""
    path, numbers = fields.get("path"), _versions(fields, "No version number provided")
    now = nanoseconds(request.received_at)
    config = await load_config(request.storage)
    async with locks.hold(path):
        meta = await load_metadata(request.storage, path)
        chosen = _present(meta, numbers, lambda record: not record.destroyed)
        for record in chosen:
            record.deletion_time = deletion_time(now, config, meta)
        if chosen:
            await save_metadata(request.storage, path, meta)
    return None


async def destroy_versions(locks: KeyLocks, request: Request, fields: FieldData) -> None:
    """Mark the versions destroyed (the metadata first), then delete their data for good."""
    path, numbers = fields.get("path"), _versions(fields, "no version number provided")
    async with locks.hold(path):
        meta = await load_metadata(request.storage, path)
        kept = meta.versions if meta else {}
        doomed = [number for number in numbers if number in kept and not kept[number].destroyed]
        for number in doomed:
            meta.versions[number].destroyed = True
        if doomed:
            await save_metadata(request.storage, path, meta)
        for number in doomed:
            await request.storage.delete(version_key(path, number))
    return None


def _versions(fields: FieldData, missing: str) -> list[int]:
    numbers = inputs.versions(fields.get("versions")) if fields.provided("versions") else []
    if not numbers:
        raise InvalidRequest(missing)
    return numbers


def _present(
    meta: KeyMetadata | None, numbers: list[int], wanted: Callable[[VersionMetadata], bool]
) -> list[VersionMetadata]:
    """The version records among `numbers` that exist and satisfy `wanted`; none when there is no secret."""
    if meta is None:
        return []
    records = (meta.versions.get(number) for number in numbers)
    return [record for record in records if record is not None and wanted(record)]
