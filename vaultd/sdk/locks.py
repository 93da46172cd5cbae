"""KeyLocks: one asyncio lock per storage key, held across a read-modify-write (Vault's locksutil), so two
writers of one record cannot both win (a KV `cas`, a key rotation, a one-use secret-id). A key's entry lives
only while someone holds or waits for it, so the table is bounded by the requests in flight."""

import asyncio
import contextlib
from collections.abc import AsyncIterator


class KeyLocks:
    def __init__(self) -> None:
        self._entries: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._entries.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._entries[key]
