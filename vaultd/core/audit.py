"""Audit: a chain of small steps (hash secrets → add metadata → JSON line → sinks) that fails closed.

Devices are enabled through sys/audit and persisted at `core/audit` (through the barrier, with each
device's HMAC salt). Every string in a logged request or response body, and the client token and accessors,
is replaced by `hmac-sha256:<hex>` under the device's salt, so the log never holds a secret. When devices
are enabled and none accepts an entry, the request is refused (500 "internal error") and, for a request
entry, never executed.
"""

import dataclasses
import datetime
import hashlib
import hmac
import json
import os

from ..clock import Clock
from ..sdk import errors

AUDIT_PATH = "core/audit"


@dataclasses.dataclass
class AuditDevice:
    path: str
    type: str
    description: str
    options: dict
    salt: str  # hex; a fresh one per enable

    def hash(self, value: str) -> str:
        return "hmac-sha256:" + hmac.new(bytes.fromhex(self.salt), value.encode(), hashlib.sha256).hexdigest()

    def info(self) -> dict:
        return {"type": self.type, "description": self.description, "options": self.options, "local": False,
                "path": self.path}


class FileSink:
    """Appends JSON lines to a file (mode 0600), fsync-free but flushed per entry; `discard` accepts all."""

    def __init__(self, file_path: str):
        self.file_path = file_path

    def write(self, line: str) -> None:
        if self.file_path == "discard":
            return
        if self.file_path == "stdout":
            print(line, flush=True)
            return
        fd = os.open(self.file_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)


class AuditBroker:
    def __init__(self, clock: Clock):
        self.clock = clock
        self.devices: dict[str, AuditDevice] = {}
        self.failures = 0  # entries no device accepted; exported as a metric

    async def load(self, core) -> None:
        raw = await core.barrier.get(AUDIT_PATH)
        self.devices = {d["path"]: AuditDevice(**d) for d in json.loads(raw)} if raw else {}

    def unload(self) -> None:
        self.devices = {}

    async def persist(self, core) -> None:
        await core.barrier.put(AUDIT_PATH, json.dumps([dataclasses.asdict(d) for d in self.devices.values()]).encode())

    def request_entry(self, request_id: str, request, token_entry, mount) -> dict:
        accessor = token_entry.accessor if token_entry else ""
        return {
            "type": "request",
            "auth": {
                "client_token": request.token, "accessor": accessor,
                "display_name": token_entry.display_name if token_entry else "",
                "policies": list(token_entry.policies) if token_entry else [],
                "token_policies": list(token_entry.policies) if token_entry else [],
                "metadata": dict(token_entry.meta or {}) if token_entry else {},
                "entity_id": "", "token_type": "service",
            },
            "request": {
                "id": request_id, "operation": request.operation.value, "mount_point": mount.path if mount else "",
                "mount_type": mount.type if mount else "", "client_token": request.token,
                "client_token_accessor": accessor, "path": request.path, "data": request.data,
                "remote_address": request.remote_address,
            },
            "error": "",
        }

    def response_entry(self, request_entry: dict, response) -> dict:
        body = None
        if response is not None:
            body = {"data": response.data, "warnings": response.warnings, "auth": response.auth}
        return {**request_entry, "type": "response", "response": body}

    async def log(self, entry: dict) -> None:
        """Write the entry to every device; refuse (500) when devices exist and none accepted it."""
        if not self.devices:
            return
        written = 0
        for device in list(self.devices.values()):
            line = json.dumps({"time": self._now(), **hash_entry(entry, device)}, default=str)
            try:
                FileSink(device.options.get("file_path", "")).write(line)
                written += 1
            except OSError:
                continue
        if written == 0:
            self.failures += 1
            raise errors.InternalError("internal error")

    def _now(self) -> str:
        moment = datetime.datetime.fromtimestamp(self.clock.now(), tz=datetime.UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_keep_plain = {"type", "operation", "mount_point", "mount_type", "path", "id", "display_name", "token_type",
               "entity_id", "remote_address", "error", "policies", "token_policies"}


def hash_entry(entry: dict, device: AuditDevice) -> dict:
    """A copy of the entry with every secret-bearing string HMAC'd under the device's salt.

    Only the envelope's own descriptive fields stay plain; inside any `data`, every string is hashed,
    whatever its key is called.
    """
    if device.options.get("log_raw") in ("true", True):
        return entry
    return _hash_value(entry, device, envelope=True)


def _hash_value(value, device: AuditDevice, envelope: bool):
    if isinstance(value, dict):
        return {
            k: v if envelope and k in _keep_plain else _hash_value(v, device, envelope and k != "data")
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_hash_value(item, device, envelope) for item in value]
    if isinstance(value, str) and value:
        return device.hash(value)
    return value
