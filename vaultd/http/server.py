"""make_app(core) → the aiohttp Application: Vault's /v1 paths, envelope, status codes and headers.

The non-logical handlers (init, seal-status, unseal, health, leader) answer from the core's state; every
other /v1 path is a logical request the core authenticates, authorises, audits and routes. Every response
carries `Cache-Control: no-store`; bodies are `application/json` exactly, since hvac parses errors only then.
"""

import json
import logging

from aiohttp import web

from .. import limits
from ..core.core import Core, LogicalRequest
from ..sdk.errors import InvalidRequest, NotFound, VaultError
from ..sdk.request import Operation
from .common import CORE, query_data, read_json_body
from .errors import error_response, json_response, status_of
from .metrics import install_metrics
from .raft_routes import raft_routes
from .rekey_routes import rekey_routes
from .standby import install_standby
from .system_routes import system_routes

logger = logging.getLogger(__name__)

_truthy = {"1", "t", "T", "TRUE", "true", "True"}
_falsy = {"0", "f", "F", "FALSE", "false", "False"}
# sys paths whose `data` keys Vault also copies to the top level of the body (vault_api.md §1.4)
_injected_prefixes = (
    "sys/audit", "sys/audit-hash/", "sys/auth", "sys/capabilities", "sys/key-status", "sys/mounts",
    "sys/policy", "sys/rekey/backup", "sys/rotate", "sys/wrapping/wrap",
)


def make_app(core: Core) -> web.Application:
    app = web.Application(
        client_max_size=limits.request_body_bytes_max, middlewares=[_error_middleware]
    )
    app[CORE] = core
    install_standby(app, core.node.api_addr)  # inside the error middleware: it turns StandbyWrite into a forward
    app.on_response_prepare.append(_no_store)
    app.router.add_routes(system_routes())
    app.router.add_routes(rekey_routes())
    app.router.add_routes(raft_routes())
    install_metrics(app, core)  # appends its middleware inside the error middleware; must precede the catch-alls
    app.router.add_route("*", "/v1/{path:.*}", _logical)
    app.router.add_route("*", "/{path:.*}", _not_found)
    return app


async def _no_store(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Cache-Control"] = "no-store"


@web.middleware
async def _error_middleware(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except VaultError as error:
        if isinstance(error, NotFound) and error.data is not None:
            return json_response(envelope(request.app[CORE].new_request_id(), error.data), status=404)
        return error_response(status_of(error), error.messages, error.data)
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, ["http: request body too large"])
    except web.HTTPMethodNotAllowed:
        return error_response(405, [])
    except web.HTTPException:
        raise
    except Exception:
        logger.exception("internal error serving %s %s", request.method, request.path)
        return error_response(500, ["internal error"])


async def _not_found(request: web.Request) -> web.Response:
    return error_response(404, [])


async def _operation_and_data(request: web.Request) -> tuple[Operation, dict]:
    method = request.method
    if method == "GET":
        listing = request.query.get("list", "false")
        if listing not in _truthy | _falsy:
            raise InvalidRequest(f"invalid value for list: {listing!r}")
        return (Operation.LIST if listing in _truthy else Operation.READ), query_data(request)
    if method == "LIST":
        return Operation.LIST, query_data(request)
    if method in ("POST", "PUT"):
        return Operation.UPDATE, await read_json_body(request)
    if method == "DELETE":
        return Operation.DELETE, query_data(request)
    if method == "PATCH":
        if request.content_type != "application/merge-patch+json":
            raise web.HTTPUnsupportedMediaType(
                text=json.dumps({"errors": ["PATCH requires Content-Type application/merge-patch+json"]}),
                content_type="application/json",
            )
        return Operation.PATCH, await read_json_body(request)
    raise web.HTTPMethodNotAllowed(method, ["GET", "LIST", "POST", "PUT", "DELETE", "PATCH"])


def client_token(request: web.Request) -> str:
    token = request.headers.get("X-Vault-Token", "")
    if not token and request.headers.get("Authorization", "").startswith("Bearer "):
        token = request.headers["Authorization"][len("Bearer ") :]
    return token.strip()


async def _logical(request: web.Request) -> web.Response:
    core = request.app[CORE]
    operation, data = await _operation_and_data(request)
    path = request.match_info["path"]
    if operation is Operation.LIST and not path.endswith("/"):
        path += "/"
    result = await core.handle(
        LogicalRequest(
            operation=operation, path=path, data=data, token=client_token(request),
            headers={key.lower(): value for key, value in request.headers.items()},
            remote_address=request.remote or "",
        )
    )
    response = result.response
    if result.wrap_info is not None:
        return json_response({**envelope("", None, mount_type=result.mount_type), "wrap_info": result.wrap_info})
    if response is None or response.empty:
        if operation in (Operation.READ, Operation.LIST):
            return error_response(404, [])
        return web.Response(status=204)
    body = envelope(result.request_id, response.data, response, result.mount_type)
    if path.startswith(_injected_prefixes) and isinstance(response.data, dict):
        body = {**response.data, **body}
    return json_response(body)


def envelope(request_id: str, data: dict | None, response=None, mount_type: str = "") -> dict:
    return {
        "request_id": request_id,
        "lease_id": getattr(response, "lease_id", "") or "",
        "renewable": bool(getattr(response, "renewable", False)),
        "lease_duration": int(getattr(response, "lease_duration", 0) or 0),
        "data": data,
        "wrap_info": None,
        "warnings": (getattr(response, "warnings", None) or None),
        "auth": getattr(response, "auth", None),
        "mount_type": mount_type,
    }
