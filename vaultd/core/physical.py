"""The physical layer the barrier writes to: opaque bytes under string keys, asynchronous.

`LocalPhysical` is the one-node implementation. It assigns consecutive indexes and applies into a
`storage` backend (LogStore or MemoryBackend) on a worker thread, since a durable apply waits on an fsync.
Group commit: transactions that arrive while an apply is in flight are merged into the next one, so one
fsync acknowledges many writes. An idle store commits at once; a busy one batches, adaptively. The merged
apply is atomic, and ops keep their arrival order, so the result equals applying them one by one.

The Raft issue replaces it with a replicated implementation of the same protocol.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from storage import Backend, InvalidBatch, StorageError
from storage.batch import group_size, validate_ops
from storage.limits import batch_ops_max

from ..sdk.errors import InternalError, InvalidRequest, TooManyRequests

logger = logging.getLogger(__name__)
Op = tuple[str, str, bytes | None]
group_bytes_max = 8 * 1024 * 1024  # keeps a merged apply well under the store's 16 MiB record limit
pending_transactions_max = 10_000  # queued behind the apply in flight; past it, writers are told to back off


class Physical(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def list(self, prefix: str) -> list[str]: ...

    async def put(self, key: str, value: bytes) -> int:
        """Store `value` durably; returns the index of the write."""

    async def delete(self, key: str) -> int: ...

    async def transaction(self, ops: Sequence[Op]) -> int:
        """Apply `ops` atomically: all or nothing."""


class LocalPhysical:
    def __init__(self, backend: Backend, monotonic: Callable[[], float] = time.monotonic):
        self.backend = backend
        self._monotonic = monotonic
        self.observe_apply: Callable[[float], None] | None = None  # set by the app: seconds per durable apply
        self._lock = threading.Lock()  # serialises index assignment with the apply itself
        self._pending: list[tuple[list[Op], asyncio.Future]] = []
        self._committer: asyncio.Task | None = None  # owned here; runs while transactions are pending
        self.applies = 0  # applies issued, for tests and metrics: fewer than transactions under load

    async def get(self, key: str) -> bytes | None:
        return self.backend.get(key)

    async def list(self, prefix: str) -> list[str]:
        return self.backend.list(prefix)

    async def put(self, key: str, value: bytes) -> int:
        return await self.transaction([("put", key, value)])

    async def delete(self, key: str) -> int:
        return await self.transaction([("delete", key, None)])

    async def transaction(self, ops: Sequence[Op]) -> int:
        try:
            checked = validate_ops(ops)  # a bad transaction fails alone, never the group it would join
        except InvalidBatch as error:  # e.g. a storage path over 4 KiB: the caller's input, a 400
            raise InvalidRequest(str(error)) from None
        if len(self._pending) >= pending_transactions_max:
            raise TooManyRequests("storage write queue is full; retry later")
        future = asyncio.get_running_loop().create_future()
        self._pending.append((checked, future))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_pending(), name="physical-group-commit")
        return await future

    async def _commit_pending(self) -> None:
        while self._pending:
            group = self._take_group()
            ops = [op for transaction, _ in group for op in transaction]
            try:
                index = await asyncio.to_thread(self._apply, ops)
            except StorageError as error:  # a full disk or a failed fsync: typed, logged once, never retried
                logger.error("storage refused a write: %s", error)
                error = InternalError(f"storage failed: {error}")
                for _, future in group:
                    if not future.done():
                        future.set_exception(error)
                continue
            except BaseException as error:  # every waiter learns the outcome, whatever it was
                for _, future in group:
                    if not future.done():
                        future.set_exception(error)
                if not isinstance(error, Exception):
                    raise
                continue
            for _, future in group:
                if not future.done():
                    future.set_result(index)

    def _take_group(self) -> list[tuple[list[Op], asyncio.Future]]:
        """The oldest pending transactions, up to the store's op count and a byte budget (at least one)."""
        taken = group_size([transaction for transaction, _ in self._pending], batch_ops_max, group_bytes_max)
        group, self._pending = self._pending[:taken], self._pending[taken:]
        return group

    def _apply(self, ops: list[Op]) -> int:
        with self._lock:
            index = self.backend.applied_index + 1
            started = self._monotonic()
            self.backend.apply(index, ops)
            if self.observe_apply is not None:
                self.observe_apply(self._monotonic() - started)
            self.applies += 1
            return index
