"""KV v2's paths, declared as data (Vault's vault-plugin-secrets-kv `VersionedKVFactory`).

Patterns are matched in order against the mount-relative path; the last one catches whatever else is sent
to a versioned mount and says which `vault kv` command was probably meant, as Vault's `pathInvalid` does.
"""

import functools
from collections.abc import Awaitable, Callable

from vaultd.sdk.backend import Backend
from vaultd.sdk.errors import UnsupportedPath
from vaultd.sdk.locks import KeyLocks
from vaultd.sdk.path import Field, FieldData, FieldType, Handler, Path
from vaultd.sdk.request import Operation, Request, Response

from . import data, metadata
from .records import load_metadata

_roots = ("metadata", "data", "delete", "undelete", "destroy")
_path = {"path": Field(FieldType.STRING, "Location of the secret.")}
_versions_fields = {
    **_path,
    "versions": Field(FieldType.RAW, "Version numbers: a list, one number, or comma-separated."),
}
_version = {"version": Field(FieldType.INT, "The version to read; 0 or absent reads the current one.", 0)}
_settings = {
    "max_versions": Field(FieldType.INT, "Versions to keep; 0 uses the mount's setting (default 10)."),
    "cas_required": Field(FieldType.BOOL, "Whether every write must carry options.cas."),
}
_config_fields = {**_settings, "delete_version_after": Field(FieldType.RAW, "A Go duration; negative disables.")}
_data_fields = {
    **_path,
    **_version,
    "options": Field(FieldType.MAP, 'Write options: {"cas": <current version>}.'),
    "data": Field(FieldType.MAP, "The secret's key/value pairs."),
}
_metadata_fields = {
    **_path,
    **_settings,
    "delete_version_after": Field(FieldType.DURATION, "Soft-delete each version this long after its write."),
    "custom_metadata": Field(FieldType.MAP, "Version-agnostic string pairs describing the secret."),
}
_subkeys_fields = {**_path, **_version, "depth": Field(FieldType.INT, "The deepest level to show; 0 for all.", 0)}


def kv_v2_backend() -> Backend:
    """A fresh backend with its own per-secret locks: build one per mount."""
    locks = KeyLocks()

    def bound(operations: dict[Operation, Callable[..., Awaitable[Response | None]]]) -> dict[Operation, Handler]:
        return {operation: functools.partial(handler, locks) for operation, handler in operations.items()}

    read, create, update, patch, delete, list_ = (
        Operation.READ, Operation.CREATE, Operation.UPDATE, Operation.PATCH, Operation.DELETE, Operation.LIST,
    )
    data_operations = {read: data.read_data, create: data.write_data, update: data.write_data,
                       patch: data.patch_data, delete: data.delete_latest}
    metadata_operations = {read: metadata.read_metadata, create: metadata.write_metadata,
                           update: metadata.write_metadata, patch: metadata.patch_metadata,
                           delete: metadata.delete_metadata, list_: metadata.list_metadata}
    paths = [
        Path("config", _config_fields, bound({read: metadata.read_config, update: metadata.write_config}),
             help="The mount's defaults for every secret."),
        Path(r"data/(?P<path>.*[^/])", _data_fields, bound(data_operations), existence_check=secret_exists,
             help="Read, write, patch or soft-delete versions of a secret."),
        Path(r"metadata/(?P<path>.*)", _metadata_fields, bound(metadata_operations), existence_check=secret_exists,
             help="A secret's settings and version history; DELETE removes every version."),
        Path(r"delete/(?P<path>.*)", _versions_fields, bound({update: data.delete_versions}),
             help="Soft-delete versions."),
        Path(r"undelete/(?P<path>.*)", _versions_fields, bound({update: data.undelete_versions}),
             help="Restore soft-deleted versions."),
        Path(r"destroy/(?P<path>.*)", _versions_fields, bound({update: data.destroy_versions}),
             help="Remove versions' data for good."),
        Path(r"subkeys/(?P<path>.*)", _subkeys_fields, bound({read: data.read_subkeys}),
             help="A version's keys with every value replaced by null."),
    ]
    return Backend([*paths, _invalid], help="A versioned key/value store (KV version 2).")


async def secret_exists(request: Request, fields: FieldData) -> bool:
    return await load_metadata(request.storage, fields.get("path")) is not None


def _invalid_path(command: str) -> Handler:
    async def refuse(request: Request, fields: FieldData) -> None:
        if request.path in _roots:
            raise UnsupportedPath("Non-listing operations on the root of a K/V v2 mount are not supported.")
        raise UnsupportedPath(
            "Invalid path for a versioned K/V secrets engine. See the API docs for the appropriate API endpoints "
            f"to use. If using the Vault CLI, use 'vault kv {command}' for this operation."
        )

    return refuse


_invalid = Path(
    r".*",
    {},
    {
        Operation.READ: _invalid_path("get"),
        Operation.UPDATE: _invalid_path("put"),
        Operation.PATCH: _invalid_path("patch"),
        Operation.DELETE: _invalid_path("delete"),
        Operation.LIST: _invalid_path("list"),
    },
    help="Anything else sent to a versioned mount.",
)
