"""The raw raft routes (vault_api.md §5): join, the join handshake, and snapshot save and restore.

- `sys/storage/raft/join` (unauthenticated, on the NEW node): `{"leader_api_addr": URL}`. The node sends a
  join request signed with the cluster key to the active node, checks the signed answer, and starts raft with
  the members it names; it then catches up (by snapshot install when the log was compacted) and must be
  unsealed with the cluster's keys.
- `sys/storage/raft/join-request` (unauthenticated, vaultd's own): the active node's side; the HMAC over the
  request is the authentication. Wrong or stale signatures get one undifferentiated 400.
- `sys/storage/raft/snapshot` GET (sudo): the snapshot file, streamed. POST, and `snapshot-force`: restore
  it on every node through the log; 204.

Snapshot file: `VDSNAP01`, a u32 length, the SHA-256 of the stream sealed by the barrier (AES-GCM under the
active term; Vault's SHA256SUMS.sealed), then the store's export stream (values are barrier ciphertext). A
restore checks the sealed hash with this cluster's keyring unless forced; a forced restore of another
cluster's snapshot seals every node, which the operator then unseals with that cluster's keys.
"""

import hashlib
import io
import struct
import tempfile

import aiohttp
from aiohttp import web

from ..core.core import LogicalRequest
from ..sdk.errors import InternalError, InvalidRequest, RequestTooLarge, VaultError
from ..sdk.request import Operation
from .common import CORE, read_json_body
from .errors import json_response

SNAPSHOT_MAGIC = b"VDSNAP01"
_length = struct.Struct(">I")
snapshot_hash_path = "core/raft/snapshot-sha256"  # the AAD of the sealed hash
snapshot_bytes_max = 1 << 30
stream_chunk_bytes = 1 << 20
join_timeout_seconds = 60.0
_different_keys = ("could not verify hash file, possibly the snapshot is using a different set of unseal keys; "
                   "use the snapshot-force API to bypass this check")


def raft_routes() -> list[web.RouteDef]:
    return [
        web.post("/v1/sys/storage/raft/join", _join),
        web.put("/v1/sys/storage/raft/join", _join),
        web.post("/v1/sys/storage/raft/join-request", _join_request),
        web.get("/v1/sys/storage/raft/snapshot", _save),
        web.post("/v1/sys/storage/raft/snapshot", _restore),
        web.put("/v1/sys/storage/raft/snapshot", _restore),
        web.post("/v1/sys/storage/raft/snapshot-force", _restore),
        web.put("/v1/sys/storage/raft/snapshot-force", _restore),
    ]


def _cluster(request: web.Request):
    ha = request.app[CORE].ha
    if not ha.enabled:
        raise InvalidRequest("raft storage is not in use")
    return ha


async def _join(request: web.Request) -> web.Response:
    cluster = _cluster(request)
    body = await read_json_body(request)
    leader = body.get("leader_api_addr")
    if not isinstance(leader, str) or not leader.startswith(("http://", "https://")):
        raise InvalidRequest("leader_api_addr must be a URL like http://127.0.0.1:8201")
    if cluster.node is not None:
        return json_response({"joined": True})
    signed = cluster.join_request()
    document = await _ask_to_join(leader.rstrip("/") + "/v1/sys/storage/raft/join-request", signed)
    await cluster.complete_join(document, signed["nonce"])
    return json_response({"joined": True})


async def _ask_to_join(url: str, signed: dict) -> dict:
    timeout = aiohttp.ClientTimeout(total=join_timeout_seconds)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, session.post(url, json=signed) as answer:
            document = await answer.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as error:
        raise InternalError(f"failed to join raft cluster: {type(error).__name__}: {error}") from None
    if answer.status != 200:
        errors = document.get("errors") if isinstance(document, dict) else None
        raise InternalError(f"failed to join raft cluster: {'; '.join(errors or [str(answer.status)])}")
    return document


async def _join_request(request: web.Request) -> web.Response:
    return json_response(await _cluster(request).admit(await read_json_body(request)))


async def _authorize(request: web.Request, operation: Operation) -> None:
    token = request.headers.get("X-Vault-Token", "")
    path = request.path[len("/v1/") :]
    await request.app[CORE].authorize(LogicalRequest(operation, path, {}, token,
                                                     remote_address=request.remote or ""))


async def _save(request: web.Request) -> web.StreamResponse:
    cluster = _cluster(request)
    await _authorize(request, Operation.READ)
    core = request.app[CORE]
    with tempfile.TemporaryFile(dir=cluster.raft_dir) as spool:
        await cluster.export_snapshot(spool)
        spool.seek(0)
        digest = hashlib.file_digest(spool, "sha256").digest()
        sealed = core.barrier.seal_value(snapshot_hash_path, digest)
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream",
                                               "Content-Disposition": 'attachment; filename="raft.snap"'})
        await response.prepare(request)
        await response.write(SNAPSHOT_MAGIC + _length.pack(len(sealed)) + sealed)
        spool.seek(0)
        while chunk := spool.read(stream_chunk_bytes):
            await response.write(chunk)
        await response.write_eof()
        return response


async def _restore(request: web.Request) -> web.Response:
    cluster = _cluster(request)
    await _authorize(request, Operation.UPDATE)
    data = await _bounded_body(request)
    stream = _checked_snapshot(request.app[CORE], data, force=request.path.endswith("-force"))
    await cluster.restore_snapshot(io.BytesIO(stream))
    return web.Response(status=204)


async def _bounded_body(request: web.Request) -> bytes:
    parts, size = [], 0
    while chunk := await request.content.read(stream_chunk_bytes):
        size += len(chunk)
        if size > snapshot_bytes_max:
            raise RequestTooLarge(f"the snapshot is over {snapshot_bytes_max} bytes")
        parts.append(chunk)
    return b"".join(parts)


def _checked_snapshot(core, data: bytes, force: bool) -> bytes:
    """The store stream inside a snapshot file; with `force`, the sealed hash is not checked."""
    header = len(SNAPSHOT_MAGIC) + _length.size
    if len(data) < header or not data.startswith(SNAPSHOT_MAGIC):
        raise InvalidRequest("not a vaultd raft snapshot")
    (sealed_length,) = _length.unpack_from(data, len(SNAPSHOT_MAGIC))
    sealed, stream = data[header : header + sealed_length], data[header + sealed_length :]
    if len(sealed) != sealed_length:
        raise InvalidRequest("the snapshot is truncated")
    if not force:
        try:
            digest = core.barrier.open_value(snapshot_hash_path, sealed)
        except VaultError:
            raise InvalidRequest(_different_keys) from None
        if digest != hashlib.sha256(stream).digest():
            raise InvalidRequest(_different_keys)
    return stream

