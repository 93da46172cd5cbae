"""What a standby does with a request, and X-Vault-Index on the active node (DESIGN.md §Read path;
vault_api.md §10).

On the active node every /v1 request runs here (the core takes the read barrier) and a request that wrote
storage answers with `X-Vault-Index: <raft index>`. A sealed node answers 503 itself. A standby that has lost
contact with the active node (an election, or a minority partition; health 429) serves nothing locally: its
replica may be stale by any amount, so every request goes to the active node, which it waits for (bounded).
On a performance standby (a follower in contact with the active node; health 473):

- the node's own status paths (init GET, seal-status, unseal, health, leader, metrics, raft join) run locally;
- raft snapshot save and restore always answer 307 to the active node;
- `X-Vault-Forward: active-node` forwards at once;
- `X-Vault-Index: N` waits (bounded) until N is applied here, then serves locally; if it is not, 412, or a
  forward with `X-Vault-Inconsistent: forward-active-node`;
- sys/ requests that change state (init, rekey, generate-root, mounts, policies, step-down, ...) go to the
  active node at once: their handlers change in-memory state before they write;
- every other request runs locally, and if it tries to write storage (StandbyWrite, before anything was
  written) it is forwarded whole: the body was kept. So is one this replica refuses from state that may be
  stale: no mount or no token (404 no route, 403), or any refusal of a POST, PUT, DELETE or PATCH (e.g. a
  check-and-set against an old version): the active node's answer is the authoritative one.

Going to the active node means forwarding (the default) or a 307 with `Location` at the active node's
api_addr, when the client sends `X-Vault-No-Request-Forwarding` or `request_forwarding = "redirect"`. A
forwarded request carries `X-Vaultd-Forwarded-By`; a node that gets one while not active does not forward it
again (a leadership change mid-flight), it answers 500 like Vault does when no active node is known.
"""

import contextlib
import logging

import aiohttp
from aiohttp import web

from ..core.ha import NoActiveNode, StandbyWrite, WriteTracker, write_tracker
from ..sdk.errors import InternalError, InvalidRequest, PermissionDenied, UnsupportedPath, VaultError
from .common import CORE

logger = logging.getLogger(__name__)

forward_timeout_seconds = 60.0
FORWARDED_BY = "X-Vaultd-Forwarded-By"
_local_paths = {
    "/v1/sys/seal-status", "/v1/sys/unseal", "/v1/sys/health", "/v1/sys/leader", "/v1/sys/metrics",
    "/v1/sys/storage/raft/join", "/v1/sys/seal",
}
_redirect_paths = {"/v1/sys/storage/raft/snapshot", "/v1/sys/storage/raft/snapshot-force"}
_read_methods = ("GET", "HEAD", "LIST")
_active_only_prefixes = ("/v1/sys/rekey", "/v1/sys/generate-root", "/v1/sys/step-down")
# Request headers not passed on: hop-by-hop ones, and what the forwarding client sets itself.
_dropped_request_headers = {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade",
                            "te", "trailer", "proxy-authorization", "proxy-connection", "accept-encoding"}
_dropped_response_headers = {"content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding",
                             "date", "server"}


@web.middleware
async def standby_middleware(request: web.Request, handler) -> web.StreamResponse:
    ha = request.app[CORE].ha
    if not ha.enabled or not request.path.startswith("/v1/") or _is_local(request):
        return await handler(request)
    if ha.is_active():
        return await _tracked(request, handler)
    if request.headers.get(FORWARDED_BY):  # a node took this one for the active one: never forward again
        await ha.wait_for_leader()
        if ha.is_active():
            return await _tracked(request, handler)
        raise NoActiveNode()
    if request.app[CORE].barrier.sealed and request.path != "/v1/sys/init":
        return await handler(request)  # 503: a sealed node serves nothing and forwards nothing but sys/init
    if not ha.is_performance_standby() or request.path in _redirect_paths or _goes_to_active(request) or (
        request.headers.get("X-Vault-Forward", "").lower() == "active-node"
    ):
        return await _to_active(request, handler)
    if (forwarded := await _index_or_forward(request, handler, ha)) is not None:
        return forwarded
    await _read_body(request)  # kept, so that the request can be replayed on the active node
    tracker = WriteTracker(standby=True)
    token = write_tracker.set(tracker)
    try:
        return await handler(request)
    except StandbyWrite:
        if tracker.index:  # leadership moved mid-request after some of its writes: replaying could repeat them
            raise InternalError("leadership changed during the request; some of its writes may have applied") from None
    except VaultError as error:
        if tracker.index or not _stale_may_explain(request, error):
            raise
        # Refused from this replica's state, which may lag the active node (a mount or a token not here yet, a
        # check-and-set against an old version): only the active node's answer is authoritative.
    finally:
        write_tracker.reset(token)
    return await _to_active(request, handler)


def _stale_may_explain(request: web.Request, error: VaultError) -> bool:
    """Whether a refusal on this standby may come from its stale replica: a missing mount or token on any
    request, and any refusal of a request that meant to change state (a write may check what it overwrites)."""
    return isinstance(error, UnsupportedPath | PermissionDenied) or request.method not in _read_methods


def _is_local(request: web.Request) -> bool:
    return request.path in _local_paths or (request.path == "/v1/sys/init" and request.method == "GET")


def _goes_to_active(request: web.Request) -> bool:
    """sys/ requests that change state (their handlers touch memory before storage), and rekey and
    generate-root, whose progress lives in the active node's memory: they never run on a standby."""
    if request.path.startswith(_active_only_prefixes):
        return True
    return request.path.startswith("/v1/sys/") and request.method not in _read_methods and not (
        request.path.startswith(("/v1/sys/capabilities", "/v1/sys/wrapping/lookup"))
    )


async def _tracked(request: web.Request, handler) -> web.StreamResponse:
    tracker = WriteTracker()
    token = write_tracker.set(tracker)
    try:
        response = await handler(request)
    finally:
        write_tracker.reset(token)
    if tracker.index and not response.prepared:
        response.headers["X-Vault-Index"] = str(tracker.index)
    return response


async def _index_or_forward(request: web.Request, handler, ha) -> web.StreamResponse | None:
    """Honour X-Vault-Index: None once the index is applied here, a forwarded response, or 412 (raised)."""
    values = request.headers.getall("X-Vault-Index", [])
    if not values:
        return None
    try:
        index = max(int(value) for value in values)
    except ValueError:
        raise InvalidRequest("X-Vault-Index must be the integer a write response carried") from None
    if request.headers.get("X-Vault-Inconsistent", "").lower() == "forward-active-node":
        if ha.store_applied_index() >= index:
            await ha.wait_for_index(index)  # the caches too
            return None
        return await _to_active(request, handler)
    await ha.wait_for_index(index)
    return None


async def _to_active(request: web.Request, handler) -> web.StreamResponse:
    """Forward or redirect to the active node. During an election, wait (bounded) for one; if this node wins,
    serve the request here."""
    ha = request.app[CORE].ha
    leader = ha.leader_api_addr() or await ha.wait_for_leader()
    if ha.is_active():
        return await _tracked(request, handler)
    if request.path in _redirect_paths or request.headers.get("X-Vault-No-Request-Forwarding") or (
        ha.forwarding == "redirect"
    ):
        return _redirect(request, leader)
    return await _forward(request, leader)


def _redirect(request: web.Request, leader: str | None) -> web.Response:
    if leader is None:
        raise NoActiveNode()
    return web.Response(status=307, headers={"Location": leader + request.path_qs})


async def _read_body(request: web.Request) -> bytes:
    """The whole body (aiohttp keeps it for later reads), or InvalidRequest when the client left before it came:
    there is nothing to forward and nobody to answer, which is no internal error."""
    try:
        return await request.read()
    except ConnectionResetError:
        logger.info("%s %s: the client closed the connection before its body arrived", request.method, request.path)
        raise InvalidRequest("the client closed the connection before its request body arrived") from None


async def _forward(request: web.Request, leader: str | None) -> web.StreamResponse:
    if leader is None:
        raise NoActiveNode()
    headers = {name: value for name, value in request.headers.items() if name.lower() not in _dropped_request_headers}
    headers[FORWARDED_BY] = request.app[CORE].node.api_addr
    body = await _read_body(request)
    session = request.app[FORWARDER].session()
    try:
        async with session.request(request.method, leader + request.path_qs, headers=headers, data=body,
                                   allow_redirects=False) as answer:
            payload = await answer.read()
            relayed = {name: value for name, value in answer.headers.items()
                       if name.lower() not in _dropped_response_headers}
    except (aiohttp.ClientError, TimeoutError) as error:
        logger.warning("forwarding %s %s to %s failed: %s", request.method, request.path, leader, error)
        raise InternalError(f"forwarding the request to the active node failed: {type(error).__name__}") from None
    await _caught_up(request.app[CORE].ha, relayed.get("X-Vault-Index"))
    return web.Response(status=answer.status, body=payload, headers=relayed)


async def _caught_up(ha, index: str | None) -> None:
    """Before relaying a forwarded write, let this node apply it too (bounded), so that the client's next read
    here sees its write: read-your-writes through one node without X-Vault-Index."""
    if index is None or not index.isdigit():
        return
    with contextlib.suppress(VaultError):
        await ha.wait_for_index(int(index))


class Forwarder:
    """The client that forwards to the active node: one per app, made on first use, its connections leaving
    from this node's own address (so that a partition between nodes cuts them too)."""

    def __init__(self, own_api_addr: str):
        self._host = own_api_addr.split("://", 1)[-1].rpartition(":")[0]
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(local_addr=(self._host, 0) if self._host else None, limit=256)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                                  timeout=aiohttp.ClientTimeout(total=forward_timeout_seconds))
        return self._session

    async def close(self, app: web.Application | None = None) -> None:
        if self._session is not None:
            await self._session.close()


FORWARDER = web.AppKey("forwarder", Forwarder)


def install_standby(app: web.Application, own_api_addr: str) -> None:
    """Add the middleware (call right after the error middleware is in place) and the forwarding client."""
    forwarder = app[FORWARDER] = Forwarder(own_api_addr)
    app.on_cleanup.append(forwarder.close)
    app.middlewares.append(standby_middleware)
