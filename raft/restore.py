"""Restoring a snapshot into a running cluster, through the log, so that every node installs the same state.

An operator's snapshot (a store export stream) is too big for one command, and installing it on the leader
alone would leave the followers diverged. So the leader proposes it in pieces:

1. `stage` commands, each putting up to `chunks_per_command` chunks of the stream at
   `_raft/staging/<restore id>/<sequence>`. They are ordinary entries: journaled, replicated, applied into
   every store (and carried by raft snapshots), so a crash or a leader change mid-upload loses nothing that
   was acknowledged.
2. One `restore` command naming the folder and the SHA-256 of the chunks joined. Applying it, every node
   deterministically reads the chunks from its own store, checks the digest, parses the stream, and installs
   one new store generation atomically (`Backend.restore`) holding: the snapshot's keys, except any under
   `_raft/`, plus this store's own `_raft/` records (idempotency table, cluster configuration) without the
   staging folder, with the store's applied index at the restore entry. A node that crashes before the switch
   replays the entry from its journal; after it, the entry is a replay and is ignored.

A stream that fails its checks makes every node refuse the `restore` entry the same way and delete the staged
chunks. `propose_restore` is the leader's side; `merged_stream` is the state machine's.
"""

from __future__ import annotations

import hashlib
import heapq
import io
from collections.abc import Awaitable, Callable
from typing import BinaryIO

from storage import limits as storage_limits
from storage.errors import SnapshotError
from storage.snapshot import StreamReader, write_stream

from .command import Command, Op, new_idempotency_id, reserved_prefix, staging_prefix

chunk_bytes = storage_limits.value_bytes_max  # one staged value
chunks_per_command = 8  # one stage command: 8 MiB, well under limits.command_bytes_max
restore_bytes_max = 1 << 30  # a snapshot larger than this is refused before anything is proposed


def staged_chunks(store, folder: str) -> list[tuple[str, bytes]]:
    """The staged chunks of `folder`, in sequence order."""
    return [(folder + name, store.get(folder + name)) for name in sorted(store.list(folder))]


def merged_stream(store, folder: str, digest: bytes, index: int, term: int, extra_ops: list[Op]) -> BinaryIO:
    """The new state as a store export stream; SnapshotError when the staged snapshot is unusable."""
    hasher, stream = hashlib.sha256(), io.BytesIO()
    for _, chunk in staged_chunks(store, folder):
        hasher.update(chunk)
        stream.write(chunk)
    if hasher.digest() != digest:
        raise SnapshotError("the staged snapshot does not match its SHA-256: chunks are missing or damaged")
    stream.seek(0)
    reader = StreamReader(stream)
    restored = [pair for chunk in reader.chunks() for pair in chunk if not pair[0].startswith(reserved_prefix)]
    own = {key: store.get(key) for key in _keys_under(store, reserved_prefix) if not key.startswith(staging_prefix)}
    for op, key, value in extra_ops:
        if op == "put":
            own[key] = value
        else:
            own.pop(key, None)
    pairs = list(heapq.merge(restored, sorted(own.items())))
    merged = io.BytesIO()
    write_stream(merged, index, term, len(pairs), pairs)
    merged.seek(0)
    return merged


def _keys_under(store, prefix: str) -> list[str]:
    """Every key under `prefix`, descending LIST's folders."""
    keys, folders = [], [prefix]
    while folders:
        folder = folders.pop()
        for name in store.list(folder):
            (folders if name.endswith("/") else keys).append(folder + name)
    return keys


async def propose_restore(
    propose: Callable[[Command], Awaitable[int]], fileobj: BinaryIO, rng, clock: Callable[[], float]
) -> int:
    """Stage `fileobj` (a store export stream) chunk by chunk, then propose the restore; its raft index.

    `propose(command)` proposes one command and returns its raft index (ReplicatedPhysical.propose), raising
    CommandRejected when the state machine refused it.
    The stream is verified here first, so a damaged upload is refused before anything is proposed.
    """
    data = fileobj.read(restore_bytes_max + 1)
    if len(data) > restore_bytes_max:
        raise SnapshotError(f"the snapshot is over {restore_bytes_max} bytes")
    for _ in StreamReader(io.BytesIO(data)).chunks():
        pass
    folder = f"{staging_prefix}{new_idempotency_id(rng).hex()}/"
    ops = [("put", f"{folder}{sequence:08d}", data[start : start + chunk_bytes])
           for sequence, start in enumerate(range(0, len(data), chunk_bytes))]
    for first in range(0, len(ops), chunks_per_command):
        await propose(Command("stage", ops[first : first + chunks_per_command], new_idempotency_id(rng),
                              float(clock())))
    digest = hashlib.sha256(data).digest()
    return await propose(Command("restore", [("put", folder, digest)], new_idempotency_id(rng), float(clock())))
