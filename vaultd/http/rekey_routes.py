"""The unauthenticated rekey and root-generation handlers (vault_api.md §3.1–3.3, §3.5–3.6):
sys/rekey/{init,update,verify} and sys/generate-root/{attempt,update}.

Each path is a table from method to handler; any other method is 405 `{"errors": []}`. Body keys match
case-insensitively, as Go decodes Vault's request structs. Shares are read as sys/unseal reads them (hex, else
base64). The operations and their state live on the core: `core.rekey` and `core.generate_root`.
"""

from collections.abc import Awaitable, Callable

from aiohttp import web

from ..sdk.errors import InvalidRequest
from .common import CORE, read_json_body
from .errors import error_response, json_response
from .system_routes import decode_key

Handler = Callable[[web.Request], Awaitable[web.Response]]


def rekey_routes() -> list[web.RouteDef]:
    return [web.route("*", path, _by_method(handlers)) for path, handlers in _routes.items()]


def _by_method(handlers: dict[str, Handler]) -> Handler:
    async def dispatch(request: web.Request) -> web.Response:
        handler = handlers.get(request.method)
        if handler is None:
            return error_response(405, [])
        return await handler(request)

    return dispatch


async def _body(request: web.Request) -> dict:
    return {key.lower(): value for key, value in (await read_json_body(request)).items()}


async def _key_and_nonce(request: web.Request) -> tuple[bytes, str]:
    body = await _body(request)
    if not body.get("key"):
        raise InvalidRequest("'key' must be specified in request body as JSON")
    nonce = body.get("nonce", "")
    if not isinstance(nonce, str):
        raise InvalidRequest("'nonce' must be a string")
    return decode_key(body["key"]), nonce


def _rekey(request: web.Request):
    """sys/rekey/* rekeys the unseal keys; sys/rekey-recovery-key/* the recovery keys of an auto seal."""
    core = request.app[CORE]
    return core.rekey_recovery if request.path.startswith("/v1/sys/rekey-recovery-key/") else core.rekey


def _no_content() -> web.Response:
    return web.Response(status=204)


# --- sys/rekey -----------------------------------------------------------------------------------------


async def _rekey_status(request: web.Request) -> web.Response:
    return json_response(await _rekey(request).status())


async def _rekey_start(request: web.Request) -> web.Response:
    return json_response(await _rekey(request).start(await _body(request)))


async def _rekey_cancel(request: web.Request) -> web.Response:
    await _rekey(request).cancel()
    return _no_content()


async def _rekey_update(request: web.Request) -> web.Response:
    key, nonce = await _key_and_nonce(request)
    return json_response(await _rekey(request).update(key, nonce))


async def _rekey_verify_status(request: web.Request) -> web.Response:
    return json_response(await _rekey(request).verify_status())


async def _rekey_verify_update(request: web.Request) -> web.Response:
    key, nonce = await _key_and_nonce(request)
    return json_response(await _rekey(request).verify_update(key, nonce))


async def _rekey_verify_restart(request: web.Request) -> web.Response:
    return json_response(await _rekey(request).verify_restart())


# --- sys/generate-root ---------------------------------------------------------------------------------


async def _generate_root_status(request: web.Request) -> web.Response:
    return json_response(await request.app[CORE].generate_root.status())


async def _generate_root_start(request: web.Request) -> web.Response:
    return json_response(await request.app[CORE].generate_root.start(await _body(request)))


async def _generate_root_cancel(request: web.Request) -> web.Response:
    await request.app[CORE].generate_root.cancel()
    return _no_content()


async def _generate_root_update(request: web.Request) -> web.Response:
    key, nonce = await _key_and_nonce(request)
    return json_response(await request.app[CORE].generate_root.update(key, nonce))


_routes: dict[str, dict[str, Handler]] = {
    "/v1/sys/rekey/init": {
        "GET": _rekey_status, "PUT": _rekey_start, "POST": _rekey_start, "DELETE": _rekey_cancel,
    },
    "/v1/sys/rekey/update": {"PUT": _rekey_update, "POST": _rekey_update},
    "/v1/sys/rekey/verify": {
        "GET": _rekey_verify_status, "PUT": _rekey_verify_update, "POST": _rekey_verify_update,
        "DELETE": _rekey_verify_restart,
    },
    "/v1/sys/rekey-recovery-key/init": {
        "GET": _rekey_status, "PUT": _rekey_start, "POST": _rekey_start, "DELETE": _rekey_cancel,
    },
    "/v1/sys/rekey-recovery-key/update": {"PUT": _rekey_update, "POST": _rekey_update},
    "/v1/sys/rekey-recovery-key/verify": {
        "GET": _rekey_verify_status, "PUT": _rekey_verify_update, "POST": _rekey_verify_update,
        "DELETE": _rekey_verify_restart,
    },
    "/v1/sys/generate-root/attempt": {
        "GET": _generate_root_status, "PUT": _generate_root_start, "POST": _generate_root_start,
        "DELETE": _generate_root_cancel,
    },
    "/v1/sys/generate-root/update": {"PUT": _generate_root_update, "POST": _generate_root_update},
}
