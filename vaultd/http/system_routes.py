"""The non-logical sys handlers: init, seal-status, unseal, health, leader. Unauthenticated, not audited,
answered from the local node's state (vault_api.md §2)."""

import base64
import binascii

from aiohttp import web

from ..sdk.errors import InvalidRequest
from .common import CORE, read_json_body
from .errors import error_response, json_response

_health_codes = {
    "activecode": 200, "standbycode": 429, "drsecondarycode": 472, "performancestandbycode": 473,
    "haunhealthycode": 474, "removedcode": 530, "sealedcode": 503, "uninitcode": 501,
}


def system_routes() -> list[web.RouteDef]:
    return [
        web.route("*", "/v1/sys/init", _init),
        web.route("*", "/v1/sys/seal-status", _seal_status),
        web.route("*", "/v1/sys/unseal", _unseal),
        web.route("*", "/v1/sys/health", _health),
        web.route("*", "/v1/sys/leader", _leader),
    ]


def _core(request: web.Request):
    return request.app[CORE]


def _allow(request: web.Request, *methods: str) -> web.Response | None:
    return None if request.method in methods else error_response(405, [])


async def _init(request: web.Request) -> web.Response:
    if (refused := _allow(request, "GET", "PUT", "POST")) is not None:
        return refused
    core = _core(request)
    if request.method == "GET":
        return json_response({"initialized": await core.is_initialized()})
    return json_response(await core.initialize(await read_json_body(request)))


async def _seal_status(request: web.Request) -> web.Response:
    if (refused := _allow(request, "GET")) is not None:
        return refused
    return json_response(await _core(request).seal_status())


async def _unseal(request: web.Request) -> web.Response:
    if (refused := _allow(request, "PUT", "POST")) is not None:
        return refused
    body = {key.lower(): value for key, value in (await read_json_body(request)).items()}
    core = _core(request)
    if body.get("reset") is True:
        return json_response(await core.reset_unseal())
    if not body.get("key"):
        raise InvalidRequest("'key' must be specified in request body as JSON, or 'reset' set to true")
    return json_response(await core.unseal(decode_key(body["key"]), migrate=body.get("migrate") is True))


def decode_key(text: object) -> bytes:
    """A key share as Vault reads it: hex when it is valid hex of 16 to 33 bytes, else standard base64."""
    if isinstance(text, str):
        try:
            key = bytes.fromhex(text)
            if 16 <= len(key) <= 33:
                return key
        except ValueError:
            pass
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            pass
    raise InvalidRequest("'key' must be a valid hex or base64 string")


async def _health(request: web.Request) -> web.Response:
    if (refused := _allow(request, "GET", "HEAD")) is not None:
        return refused
    codes = dict(_health_codes)
    for name in codes:
        if name in request.query:
            try:
                codes[name] = int(request.query[name])
            except ValueError:
                return error_response(400, [])
    standby_ok = request.query.get("standbyok", "false").lower() in ("1", "t", "true")
    body = await _core(request).health()
    if not body["initialized"]:
        status = codes["uninitcode"]
    elif body["sealed"]:
        status = codes["sealedcode"]
    elif body["standby"] and not standby_ok:
        status = codes["performancestandbycode"] if body["performance_standby"] else codes["standbycode"]
    else:
        status = codes["activecode"]
    if request.method == "HEAD":
        return web.Response(status=status)
    return json_response(body, status=status)


async def _leader(request: web.Request) -> web.Response:
    if (refused := _allow(request, "GET")) is not None:
        return refused
    return json_response(await _core(request).leader())
