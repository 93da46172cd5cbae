"""The one table from error classes to HTTP statuses, and Vault's error body."""

import json

from aiohttp import web

from ..core.ha import StandbyWrite
from ..sdk import errors

# Most specific class first: the first isinstance match wins.
STATUS_BY_ERROR: list[tuple[type[errors.VaultError], int]] = [
    (errors.InvalidRequest, 400),
    (errors.PermissionDenied, 403),
    (errors.UnsupportedPath, 404),
    (errors.NotFound, 404),
    (errors.UnsupportedOperation, 405),
    (errors.PreconditionFailed, 412),
    (errors.RequestTooLarge, 413),
    (errors.TooManyRequests, 429),
    (errors.InternalError, 500),
    (errors.NotInitialized, 501),
    (errors.Sealed, 503),
    (StandbyWrite, 503),
]


def status_of(error: errors.VaultError) -> int:
    for error_class, status in STATUS_BY_ERROR:
        if isinstance(error, error_class):
            return status
    return 500


def json_response(body: object, status: int = 200) -> web.Response:
    """`Content-Type: application/json` exactly, with no charset: hvac parses errors only then."""
    return web.Response(body=json.dumps(body).encode(), status=status, content_type="application/json")


def error_response(status: int, messages: list[str], data: dict | None = None) -> web.Response:
    body: dict = {"errors": messages}
    if data is not None:
        body["data"] = data
    return json_response(body, status=status)
