"""Path declarations: an engine lists its paths as data, and one dispatcher (backend.py) serves them."""

import dataclasses
import enum
from collections.abc import Awaitable, Callable

from .request import Operation, Request, Response


class FieldType(enum.Enum):
    STRING = "string"
    INT = "int"
    BOOL = "bool"
    MAP = "map"
    STRING_LIST = "string_list"  # a list of strings, or one comma-separated string
    DURATION = "duration"  # seconds as an int, or "30s", "5m", "2h", "1d"
    RAW = "raw"  # any JSON value, unparsed


@dataclasses.dataclass(frozen=True)
class Field:
    type: FieldType
    description: str = ""
    default: object = None
    required: bool = False


Handler = Callable[[Request, "FieldData"], Awaitable[Response | None]]
ExistenceCheck = Callable[[Request, "FieldData"], Awaitable[bool]]


@dataclasses.dataclass
class Path:
    """`pattern` is a regular expression over the mount-relative path; named groups become fields."""

    pattern: str
    fields: dict[str, Field]
    operations: dict[Operation, Handler]
    existence_check: ExistenceCheck | None = None
    help: str = ""


class FieldData:
    """The request's fields, parsed and validated against a Path's declarations."""

    def __init__(self, values: dict[str, object], fields: dict[str, Field], raw: dict):
        self._values = values
        self._fields = fields
        self.raw = raw  # the request body as sent, for engines that keep arbitrary keys (KV data)

    def get(self, name: str) -> object:
        if name in self._values:
            return self._values[name]
        field = self._fields.get(name)
        assert field is not None, f"{name!r} is not a declared field"
        return field.default

    def provided(self, name: str) -> bool:
        return name in self._values
