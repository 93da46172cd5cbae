"""Request and Response: what crosses between the core and an engine. No HTTP in here."""

import dataclasses
import enum

from .storage import StorageView


class Operation(enum.Enum):
    CREATE = "create"
    READ = "read"
    UPDATE = "update"
    PATCH = "patch"
    DELETE = "delete"
    LIST = "list"


@dataclasses.dataclass
class Request:
    """One request, routed to a mount. `path` is relative to the mount; `storage` is the mount's own view."""

    operation: Operation
    path: str
    data: dict
    storage: StorageView
    mount_point: str = ""
    received_at: float = 0.0  # stamped by the core from its clock; engines read no clock themselves
    token_accessor: str = ""  # never the token itself
    display_name: str = ""
    policies: list[str] = dataclasses.field(default_factory=list)
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    remote_address: str = ""  # the client's IP, for CIDR-bound credentials


@dataclasses.dataclass
class Response:
    """What an engine answers. `data is None` and nothing else set means 204 No Content."""

    data: dict | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)
    auth: dict | None = None
    lease_id: str = ""
    lease_duration: int = 0
    renewable: bool = False
    wrap_info: dict | None = None  # a response that is itself a wrapping token (sys/wrapping/rewrap)

    @property
    def empty(self) -> bool:
        return self.data is None and self.auth is None and not self.warnings and self.wrap_info is None
