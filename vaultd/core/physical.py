"""The physical layer the barrier writes to: opaque bytes under string keys, asynchronous.

`LocalPhysical` is the one-node implementation: it assigns consecutive indexes and applies into a
`storage` backend (LogStore or MemoryBackend) on a worker thread, since a durable apply waits on an fsync.
The Raft issue replaces it with a replicated implementation of the same protocol.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Protocol

from storage import Backend

Op = tuple[str, str, bytes | None]


class Physical(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def list(self, prefix: str) -> list[str]: ...

    async def put(self, key: str, value: bytes) -> int:
        """Store `value` durably; returns the index of the write."""

    async def delete(self, key: str) -> int: ...

    async def transaction(self, ops: Sequence[Op]) -> int:
        """Apply `ops` atomically: all or nothing."""


class LocalPhysical:
    def __init__(self, backend: Backend):
        self.backend = backend
        self._lock = threading.Lock()  # serialises index assignment with the apply itself

    async def get(self, key: str) -> bytes | None:
        return self.backend.get(key)

    async def list(self, prefix: str) -> list[str]:
        return self.backend.list(prefix)

    async def put(self, key: str, value: bytes) -> int:
        return await self.transaction([("put", key, value)])

    async def delete(self, key: str) -> int:
        return await self.transaction([("delete", key, None)])

    async def transaction(self, ops: Sequence[Op]) -> int:
        return await asyncio.to_thread(self._apply, list(ops))

    def _apply(self, ops: list[Op]) -> int:
        with self._lock:
            index = self.backend.applied_index + 1
            self.backend.apply(index, ops)
            return index
