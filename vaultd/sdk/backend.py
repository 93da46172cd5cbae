"""The dispatcher: match a request to a declared Path, parse and validate its fields, call the handler.

A handler never sees HTTP and never branches on the method. A write (UPDATE) to a path with an existence
check becomes CREATE when nothing exists there yet, as Vault decides create versus update.
"""

import re

from .errors import InvalidRequest, UnsupportedOperation, UnsupportedPath
from .path import Field, FieldData, FieldType, Path
from .request import Operation, Request, Response

_duration_units = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Backend:
    def __init__(self, paths: list[Path], help: str = ""):
        self.paths = paths
        self.help = help
        self._compiled = [(re.compile(path.pattern), path) for path in paths]

    def match(self, relative_path: str) -> tuple[Path, dict[str, str]]:
        for regex, path in self._compiled:
            found = regex.fullmatch(relative_path)
            if found:
                return path, {k: v for k, v in found.groupdict().items() if v is not None}
        raise UnsupportedPath(f"unsupported path: {relative_path!r}")

    async def handle(self, request: Request) -> Response | None:
        path, captured = self.match(request.path)
        fields = parse_fields(path.fields, {**request.data, **captured}, request.data)
        operation = request.operation
        creates = operation is Operation.UPDATE and Operation.CREATE in path.operations and path.existence_check
        if creates and not await path.existence_check(request, fields):
            operation = Operation.CREATE
        if operation is Operation.CREATE and operation not in path.operations:
            operation = Operation.UPDATE
        handler = path.operations.get(operation)
        if handler is None:
            raise UnsupportedOperation(f"unsupported operation: {operation.value} on {request.path!r}")
        request.operation = operation
        return await handler(request, fields)

    async def existence(self, request: Request) -> bool | None:
        """For the ACL: does a write to this path create (False) or update (True)? None when undecidable."""
        path, captured = self.match(request.path)
        if path.existence_check is None:
            return None
        return await path.existence_check(request, parse_fields(path.fields, {**request.data, **captured}, {}))


def parse_fields(declared: dict[str, Field], values: dict, raw: dict) -> FieldData:
    parsed = {}
    for name, field in declared.items():
        if name in values and values[name] is not None:
            parsed[name] = parse_value(name, field, values[name])
        elif field.required:
            raise InvalidRequest(f"missing required field {name!r}")
    return FieldData(parsed, declared, raw)


def parse_value(name: str, field: Field, value: object) -> object:
    try:
        return _parsers[field.type](value)
    except (TypeError, ValueError):
        raise InvalidRequest(f"error converting input {value!r} for field {name!r}") from None


def _parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "false", "0", "t", "f"):
        return value.lower() in ("true", "1", "t")
    if isinstance(value, int):
        return bool(value)
    raise ValueError(value)


def _parse_int(value: object) -> int:
    if isinstance(value, bool):
        raise TypeError(value)
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(value)
    return int(value)


def parse_duration(value: object) -> int:
    """Seconds from an int or a Vault duration string ("90", "30s", "5m", "1h30m", "2d")."""
    if isinstance(value, bool):
        raise TypeError(value)
    if isinstance(value, int | float):
        return int(value)
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    total, number = 0, ""
    for character in text:
        if character.isdigit():
            number += character
        elif character in _duration_units and number:
            total, number = total + int(number) * _duration_units[character], ""
        else:
            raise ValueError(value)
    if number:
        raise ValueError(value)
    return total


def _parse_string_list(value: object) -> list[str]:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise TypeError(value)


def _parse_string(value: object) -> str:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    raise TypeError(value)


def _parse_map(value: object) -> dict:
    if isinstance(value, dict):
        return value
    raise TypeError(value)


_parsers = {
    FieldType.STRING: _parse_string,
    FieldType.INT: _parse_int,
    FieldType.BOOL: _parse_bool,
    FieldType.MAP: _parse_map,
    FieldType.STRING_LIST: _parse_string_list,
    FieldType.DURATION: parse_duration,
    FieldType.RAW: lambda value: value,
}
