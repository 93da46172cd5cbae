"""sys/mounts, sys/auth and sys/internal/ui/mounts: enable, disable, tune and list mounts."""

from ..sdk import errors
from ..sdk.backend import parse_duration
from ..sdk.path import Field, FieldType, Path
from ..sdk.request import Operation, Response
from .mounts import mount_path, reserved_mounts
from .system_init import new_mount_entry

_enable_fields = {
    "path": Field(FieldType.STRING),
    "type": Field(FieldType.STRING),
    "description": Field(FieldType.STRING, default=""),
    "config": Field(FieldType.MAP, default={}),
    "options": Field(FieldType.MAP),
    "local": Field(FieldType.BOOL, default=False),
    "seal_wrap": Field(FieldType.BOOL, default=False),
    "plugin_name": Field(FieldType.STRING),
    "external_entropy_access": Field(FieldType.BOOL, default=False),
}
_tune_fields = {
    "path": Field(FieldType.STRING),
    "description": Field(FieldType.STRING),
    "default_lease_ttl": Field(FieldType.DURATION),
    "max_lease_ttl": Field(FieldType.DURATION),
    "options": Field(FieldType.MAP),
    "listing_visibility": Field(FieldType.STRING),
}


def mount_paths(core) -> list[Path]:
    return [
        *_table_paths(core, "mounts", prefix=""),
        *_table_paths(core, "auth", prefix="auth/"),
        Path(r"internal/ui/mounts/(?P<path>.+)", {"path": Field(FieldType.STRING)},
             {Operation.READ: _ui_mount(core)}, help="the mount that serves a path"),
    ]


def _table_paths(core, table: str, prefix: str) -> list[Path]:
    async def listing(request, fields):
        return Response(data={e.path[len(prefix):]: e.info() for e in core.router.table(table)})

    async def read(request, fields):
        return Response(data=_entry(core, prefix + mount_path(fields.get("path")), table).info())

    async def enable(request, fields):
        await _enable(core, table, prefix, fields)
        return None

    async def disable(request, fields):
        await _disable(core, table, prefix + mount_path(fields.get("path")))
        return None

    async def read_tune(request, fields):
        entry = _entry(core, prefix + mount_path(fields.get("path")), table)
        config = entry.info()["config"]
        data = {"description": entry.description, "default_lease_ttl": config["default_lease_ttl"] or 2764800,
                "max_lease_ttl": config["max_lease_ttl"] or 2764800, "force_no_cache": False}
        if entry.options is not None:
            data["options"] = entry.options
        return Response(data=data)

    async def tune(request, fields):
        await _tune(core, _entry(core, prefix + mount_path(fields.get("path")), table), fields)
        return None

    return [
        Path(table, {}, {Operation.READ: listing}, help=f"list the {table} table"),
        Path(rf"{table}/(?P<path>.+?)/tune", _tune_fields, {Operation.READ: read_tune, Operation.UPDATE: tune},
             help="tune a mount"),
        Path(rf"{table}/(?P<path>.+)", _enable_fields,
             {Operation.READ: read, Operation.UPDATE: enable, Operation.DELETE: disable}, help="one mount"),
    ]


def _entry(core, path: str, table: str):
    entry = core.router.entries.get(path)
    if entry is None or entry.table != table:
        raise errors.InvalidRequest(f"no mount at {path}" if table == "mounts" else f"no auth mount at {path}")
    return entry


async def _enable(core, table: str, prefix: str, fields) -> None:
    path = prefix + mount_path(fields.get("path"))
    mount_type, options = fields.get("type") or "", fields.get("options")
    if mount_type == "kv-v2":
        mount_type, options = "kv", {**(options or {}), "version": "2"}
    if mount_type == "kv":
        options = {"version": str((options or {}).get("version", "1"))}
    allowed = tuple(core.engines if table == "mounts" else core.auth_methods)
    if mount_type == "token":
        raise errors.InvalidRequest("token credential backend cannot be instantiated")
    if mount_type not in allowed:
        raise errors.InvalidRequest(f"plugin not found in the catalog: {mount_type or '(no type)'}")
    if table == "mounts" and path.startswith(reserved_mounts):
        raise errors.InvalidRequest(f"cannot mount under reserved path {path}")
    config = {k: parse_duration(v) for k, v in (fields.get("config") or {}).items() if k.endswith("lease_ttl")}
    entry = new_mount_entry(core, path, mount_type, fields.get("description"), table=table, options=options,
                            config=config, local=fields.get("local"), seal_wrap=fields.get("seal_wrap"))
    core.router.mount(entry)
    try:
        await core.persist_mounts()
    except BaseException:
        core.router.unmount(path)
        raise


async def _disable(core, table: str, path: str) -> None:
    entry = core.router.entries.get(path)
    if entry is None or entry.table != table:
        return  # Vault answers 204 for a path that is not mounted
    if entry.type in ("system", "token"):
        raise errors.InvalidRequest(f"cannot unmount {path!r}")
    core.router.unmount(path)
    await core.persist_mounts()
    await _delete_tree(core.barrier, entry.storage_prefix)


async def _delete_tree(barrier, prefix: str) -> None:
    """Delete every key under `prefix`, depth first. Bounded by what exists."""
    for child in await barrier.list(prefix):
        if child.endswith("/"):
            await _delete_tree(barrier, prefix + child)
        else:
            await barrier.delete(prefix + child)


async def _tune(core, entry, fields) -> None:
    if fields.provided("description"):
        entry.description = fields.get("description")
    for name in ("default_lease_ttl", "max_lease_ttl"):
        if fields.provided(name):
            entry.config[name] = fields.get(name)
    if fields.provided("options") and entry.type == "kv":
        version = str(fields.get("options").get("version", (entry.options or {}).get("version", "1")))
        entry.options = {"version": version}
        core.router.unmount(entry.path)
        core.router.mount(entry)
    await core.persist_mounts()


def _ui_mount(core):
    async def read(request, fields):
        entry = core.router.match(fields.get("path"))
        if entry is None:
            raise errors.InvalidRequest(f"no mount for path {fields.get('path')!r}")
        # unauthenticated path: the caller must hold some grant under the mount (Vault's hasMountAccess)
        acl = await core.policies.acl(request.policies) if request.policies else None
        if acl is None or not has_mount_access(acl, entry.path):
            raise errors.PermissionDenied()
        return Response(data={**entry.info(), "path": entry.path})

    return read


def has_mount_access(acl, mount: str) -> bool:
    """Whether any rule grants something (not only `deny`) on a path under `mount`, or on all of it."""
    if acl.root:
        return True
    for table in (acl.exact_rules, acl.prefix_rules, acl.segment_wildcard_rules):
        for pattern, permissions in table.items():
            fixed = pattern.split("+", 1)[0]
            under = fixed.startswith(mount) or (table is not acl.exact_rules and mount.startswith(fixed))
            if under and permissions.capabilities - {"deny"} and "deny" not in permissions.capabilities:
                return True
    return False
