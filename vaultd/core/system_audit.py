"""sys/audit and sys/audit-hash: enable, list and disable file audit devices; hash a value as a device would."""


from ..sdk import errors
from ..sdk.path import Field, FieldType, Path
from ..sdk.request import Operation, Response
from .audit import AuditDevice, FileSink
from .mounts import mount_path

_fields = {
    "path": Field(FieldType.STRING),
    "type": Field(FieldType.STRING),
    "description": Field(FieldType.STRING, default=""),
    "options": Field(FieldType.MAP, default={}),
    "local": Field(FieldType.BOOL, default=False),
    "input": Field(FieldType.STRING),
}


def audit_paths(core) -> list[Path]:
    async def listing(request, fields):
        return Response(data={path: device.info() for path, device in core.audit.devices.items()})

    async def enable(request, fields):
        await _enable(core, mount_path(fields.get("path")), fields)
        return None

    async def disable(request, fields):
        if core.audit.devices.pop(mount_path(fields.get("path")), None) is not None:
            await core.audit.persist(core)
        return None

    async def audit_hash(request, fields):
        device = core.audit.devices.get(mount_path(fields.get("path")))
        if device is None:
            raise errors.InvalidRequest("unknown audit backend")
        return Response(data={"hash": device.hash(fields.get("input") or "")})

    return [
        Path("audit", {}, {Operation.READ: listing}, help="list audit devices"),
        Path(r"audit/(?P<path>.+)", _fields, {Operation.UPDATE: enable, Operation.DELETE: disable},
             help="an audit device"),
        Path(r"audit-hash/(?P<path>.+)", _fields, {Operation.UPDATE: audit_hash}, help="hash as a device would"),
    ]


async def _enable(core, path: str, fields) -> None:
    if fields.get("type") != "file":
        raise errors.InvalidRequest(f"unknown backend type: {fields.get('type')!r}")
    if path in core.audit.devices:
        raise errors.InvalidRequest(f"path already in use: {path}")
    options = {key: str(value) for key, value in fields.get("options").items()}
    if "path" in options and "file_path" not in options:
        options["file_path"] = options.pop("path")
    if not options.get("file_path"):
        raise errors.InvalidRequest("file_path is required")
    try:
        FileSink(options["file_path"]).write("")  # Vault test-writes a device before enabling it
    except OSError as error:
        raise errors.InvalidRequest(f"sanity check failed; unable to open {options['file_path']}: {error}") from None
    device = AuditDevice(path, "file", fields.get("description"), options, core.randbytes(32).hex())
    core.audit.devices[path] = device
    try:
        await core.audit.persist(core)
    except BaseException:
        del core.audit.devices[path]
        raise


