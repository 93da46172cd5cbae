"""The sys/ backend: mounts, auth methods, policies, capabilities, key status and rotation, audit devices,
the seal, and the UI mount lookup the Vault CLI's `kv` commands use. Declared as Paths, served by the
sdk dispatcher; handlers reach the core through a closure, never through HTTP."""

from ..sdk import errors
from ..sdk.backend import Backend
from ..sdk.path import Field, FieldType, Path
from ..sdk.request import Operation, Response
from .system_audit import audit_paths
from .system_leases import lease_paths, wrapping_paths
from .system_mounts import mount_paths
from .system_policies import policy_paths
from .system_raft import raft_paths

# Paths under which the ACL requires `sudo` besides the operation's capability (Vault's PathsSpecial.Root).
sudo_paths = (
    "sys/audit", "sys/audit/*", "sys/auth/*", "sys/rotate", "sys/rotate/config", "sys/seal", "sys/step-down",
    "sys/raw", "sys/raw/*", "sys/remount", "sys/leases/revoke-prefix/*", "sys/leases/revoke-force/*",
    "sys/leases/lookup/*", "sys/revoke-prefix/*", "sys/revoke-force/*", "auth/token/revoke-orphan",
    "auth/token/accessors/", "sys/storage/raft/remove-peer", "sys/storage/raft/snapshot",
    "sys/storage/raft/snapshot-force", "sys/storage/raft/configuration", "sys/storage/raft/autopilot/state",
)


def system_backend(core) -> Backend:
    return Backend(
        mount_paths(core) + policy_paths(core) + audit_paths(core) + _key_paths(core) + _seal_paths(core)
        + lease_paths(core) + wrapping_paths(core) + raft_paths(core),
        help="system endpoints used for control, policy and debugging",
    )


def _key_paths(core) -> list[Path]:
    async def key_status(request, fields):
        return Response(data=core.barrier.key_status())

    async def rotate(request, fields):
        await core.barrier.rotate()
        return None

    return [
        Path("key-status", {}, {Operation.READ: key_status}, help="the active barrier key term"),
        Path("rotate(/keyring)?", {}, {Operation.UPDATE: rotate}, help="add a barrier key term"),
    ]


def _seal_paths(core) -> list[Path]:
    async def seal(request, fields):
        await core.seal_vault()
        return None

    async def capabilities_self(request, fields):
        paths = fields.get("paths") or ([fields.get("path")] if fields.get("path") else [])
        if not paths:
            raise errors.InvalidRequest("paths must be supplied")
        acl = await core.policies.acl(request.policies)
        data = {path: acl.capabilities(path) for path in paths}
        if len(paths) == 1:
            data["capabilities"] = data[paths[0]]
        return Response(data=data)

    fields = {"paths": Field(FieldType.STRING_LIST), "path": Field(FieldType.STRING)}
    return [
        Path("seal", {}, {Operation.UPDATE: seal}, help="seal the vault"),
        Path("capabilities-self", fields, {Operation.UPDATE: capabilities_self}, help="the caller's capabilities"),
    ]
