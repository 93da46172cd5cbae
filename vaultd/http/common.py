"""What the HTTP handlers share: the core's AppKey and request-body parsing."""

import json

from aiohttp import web

from ..core.core import Core
from ..sdk.errors import InvalidRequest

CORE = web.AppKey("core", Core)


async def read_json_body(request: web.Request) -> dict:
    """The JSON object in the body; empty → {}. JSON `null` values mean unset, as hvac sends them."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidRequest(f"error parsing JSON: {error}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("error parsing JSON: the body must be a JSON object")
    return {key: value for key, value in body.items() if value is not None}


def query_data(request: web.Request) -> dict:
    data: dict = {}
    for key in dict.fromkeys(request.query):
        if key in ("list", "help"):
            continue
        values = request.query.getall(key)
        data[key] = values[0] if len(values) == 1 else values
    return data
