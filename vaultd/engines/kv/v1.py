"""KV v1 (Vault's PassthroughBackend): any JSON map stored whole at any path, read back with a lease
duration, listed by folder. Storage layout: the secret at `<path>` is the view's key `<path>`, its value the
request body as UTF-8 JSON; so a LIST of `<folder>/` is a LIST of the view's `<folder>/`."""

import json

from vaultd.sdk.backend import Backend, parse_duration
from vaultd.sdk.errors import InvalidRequest, NotFound
from vaultd.sdk.path import Field, FieldData, FieldType, Path
from vaultd.sdk.request import Operation, Request, Response

# Vault's default lease TTL (768h), which a v1 read reports unless the secret carries "ttl" (or "lease").
lease_duration_default_seconds = 768 * 3600

assert lease_duration_default_seconds == 2_764_800


def kv_v1_backend() -> Backend:
    return Backend(
        [
            Path(
                r"(?P<path>.*)",
                {"path": Field(FieldType.STRING, "Location of the secret.")},
                {
                    Operation.READ: read_secret,
                    Operation.CREATE: write_secret,
                    Operation.UPDATE: write_secret,
                    Operation.DELETE: delete_secret,
                    Operation.LIST: list_secrets,
                },
                existence_check=secret_exists,
                help="Pass-through secret storage: arbitrary key/value pairs at any path.",
            )
        ],
        help="A key/value store (KV version 1).",
    )


async def secret_exists(request: Request, fields: FieldData) -> bool:
    path = fields.get("path")
    return bool(path) and await request.storage.get(path) is not None


async def read_secret(request: Request, fields: FieldData) -> Response:
    path = fields.get("path")
    raw = await request.storage.get(path) if path else None
    if raw is None:
        raise NotFound()
    data = json.loads(raw)
    return Response(data=data, lease_duration=_lease_duration(data))


def _lease_duration(data: dict) -> int:
    """Seconds from the secret's own "ttl" (else "lease") when it parses as a duration, else the default."""
    for name in ("ttl", "lease"):
        if name in data:
            try:
                seconds = parse_duration(data[name])
            except (TypeError, ValueError):
                return lease_duration_default_seconds
            return seconds if seconds >= 0 else lease_duration_default_seconds
    return lease_duration_default_seconds


async def write_secret(request: Request, fields: FieldData) -> None:
    """Store the whole body, replacing what was there. A v1 write answers 204, as Vault's does."""
    path = fields.get("path")
    if not path:
        raise InvalidRequest("missing path")
    if path.endswith("/"):
        # Vault would store it, and the key would then list as a folder with nothing in it
        raise InvalidRequest(f"invalid path {path!r}: a secret's path cannot end in '/'")
    if not fields.raw:
        raise InvalidRequest("missing data fields")
    await request.storage.put(path, json.dumps(fields.raw, separators=(",", ":")).encode())
    return None


async def delete_secret(request: Request, fields: FieldData) -> None:
    path = fields.get("path")
    if path:
        await request.storage.delete(path)
    return None


async def list_secrets(request: Request, fields: FieldData) -> Response:
    """The secrets and folders (ending in '/') directly under the folder; NotFound when there are none."""
    folder = fields.get("path")
    prefix = folder if not folder or folder.endswith("/") else folder + "/"
    keys = await request.storage.list(prefix)
    if not keys:
        raise NotFound()
    return Response(data={"keys": keys})
