"""StorageView: what an engine sees of storage. Plaintext bytes under keys relative to the engine's own
prefix; the barrier encrypts below it, and an engine can never name a key outside its mount."""

from __future__ import annotations

import asyncio
from typing import Protocol


class StorageView(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, value: bytes) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def list(self, prefix: str) -> list[str]:
        """Immediate children of `prefix`; folders end in '/'."""

    async def transaction(self, ops: list[tuple[str, str, bytes | None]]) -> None:
        """`[("put", key, value) | ("delete", key, None)]`, applied atomically: all or nothing, one write."""


class MemoryView:
    """A StorageView in a dict, for unit tests of engines."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}

    async def get(self, key: str) -> bytes | None:
        return self.values.get(key)

    async def put(self, key: str, value: bytes) -> None:
        self.values[key] = bytes(value)

    async def delete(self, key: str) -> None:
        self.values.pop(key, None)

    async def transaction(self, ops: list[tuple[str, str, bytes | None]]) -> None:
        assert all(op in ("put", "delete") for op, _, _ in ops), ops
        for op, key, value in ops:
            if op == "put":
                self.values[key] = bytes(value)
            else:
                self.values.pop(key, None)

    async def list(self, prefix: str) -> list[str]:
        children = set()
        for key in self.values:
            if key.startswith(prefix):
                rest = key[len(prefix) :]
                children.add(rest.split("/")[0] + "/" if "/" in rest else rest)
        return sorted(children)


class YieldingMemoryView(MemoryView):
    """A MemoryView that yields to the event loop on every call, as a replicated view would, so concurrent
    coroutines interleave in tests of engines' locking."""

    async def get(self, key: str) -> bytes | None:
        await asyncio.sleep(0)
        return await super().get(key)

    async def put(self, key: str, value: bytes) -> None:
        await asyncio.sleep(0)
        await super().put(key, value)

    async def delete(self, key: str) -> None:
        await asyncio.sleep(0)
        await super().delete(key)

    async def transaction(self, ops: list[tuple[str, str, bytes | None]]) -> None:
        await asyncio.sleep(0)
        await super().transaction(ops)

    async def list(self, prefix: str) -> list[str]:
        await asyncio.sleep(0)
        return await super().list(prefix)
