"""The mount table and the router: which engine serves a path, and the storage view it gets.

Secret mounts are persisted at `core/mounts`, auth mounts at `core/auth` (JSON, through the barrier). Each
mount's data lives under `logical/<uuid>/` (auth: `auth/<uuid>/`), so disabling a mount removes exactly its
own data, and an engine can never name a key outside its view. Routing is longest-prefix on the mount path.
"""

import dataclasses
import json
from collections.abc import Callable

from ..sdk.backend import Backend
from ..sdk.errors import InvalidRequest

MOUNTS_PATH = "core/mounts"
AUTH_PATH = "core/auth"
reserved_mounts = ("sys/", "auth/", "cubbyhole/", "identity/")


@dataclasses.dataclass
class MountEntry:
    path: str  # ends in '/'; auth mounts include the "auth/" prefix
    type: str
    uuid: str
    accessor: str
    description: str = ""
    options: dict | None = None
    config: dict = dataclasses.field(default_factory=dict)
    local: bool = False
    seal_wrap: bool = False
    table: str = "mounts"  # "mounts" or "auth"

    @property
    def storage_prefix(self) -> str:
        return f"{'auth' if self.table == 'auth' else 'logical'}/{self.uuid}/"

    def info(self) -> dict:
        """The mount as sys/mounts shows it."""
        config = {"default_lease_ttl": 0, "force_no_cache": False, "max_lease_ttl": 0, **self.config}
        return {
            "accessor": self.accessor, "config": config, "description": self.description,
            "external_entropy_access": False, "local": self.local, "options": self.options,
            "plugin_version": "", "running_plugin_version": "", "running_sha256": "",
            "seal_wrap": self.seal_wrap, "type": self.type, "uuid": self.uuid,
        }


def mount_path(path: str) -> str:
    path = path.strip("/")
    if not path:
        raise InvalidRequest("path cannot be empty")
    if ".." in path.split("/"):
        raise InvalidRequest("path cannot contain '..'")
    return path + "/"


class Router:
    """Mounted backends by path. `backend_for(entry)` builds the engine for a mount entry."""

    def __init__(self, backend_for: Callable[[MountEntry], Backend]):
        self._backend_for = backend_for
        self.entries: dict[str, MountEntry] = {}
        self.backends: dict[str, Backend] = {}

    def mount(self, entry: MountEntry) -> None:
        for existing in self.entries:
            if entry.path.startswith(existing) or existing.startswith(entry.path):
                raise InvalidRequest(f"path is already in use at {existing}")
        self.backends[entry.path] = self._backend_for(entry)
        self.entries[entry.path] = entry

    def unmount(self, path: str) -> MountEntry | None:
        self.backends.pop(path, None)
        return self.entries.pop(path, None)

    def match(self, path: str) -> MountEntry | None:
        best = None
        for mount in self.entries:
            if (path + "/").startswith(mount) and (best is None or len(mount) > len(best)):
                best = mount
        return self.entries.get(best) if best else None

    def table(self, name: str) -> list[MountEntry]:
        return [entry for entry in self.entries.values() if entry.table == name]


def encode_table(entries: list[MountEntry]) -> bytes:
    return json.dumps([dataclasses.asdict(entry) for entry in entries], sort_keys=True).encode()


def decode_table(data: bytes | None) -> list[MountEntry]:
    return [MountEntry(**fields) for fields in json.loads(data)] if data else []
