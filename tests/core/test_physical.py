"""LocalPhysical's group commit: concurrent transactions share applies (one fsync each) without changing
the outcome; a bad transaction fails alone; a failed apply fails exactly the waiters of its group."""

import asyncio
import threading

import pytest

from storage import MemoryBackend, StoreFailed
from vaultd.core.physical import LocalPhysical
from vaultd.sdk.errors import InternalError, InvalidRequest


class GatedBackend(MemoryBackend):
    """A store whose first apply waits for a gate, as a slow fsync would; later applies go straight on."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.batches: list[int] = []

    def apply(self, index, ops, term=0):
        self.gate.wait(timeout=10)
        self.batches.append(len(ops))
        super().apply(index, ops, term)


def test_concurrent_transactions_share_applies_and_keep_their_order():
    async def scenario():
        backend = GatedBackend()
        physical = LocalPhysical(backend)
        first = asyncio.create_task(physical.put("k", b"0"))
        await asyncio.sleep(0)  # the first apply is now in flight, holding the gate
        rest = [asyncio.create_task(physical.put("k", str(i).encode())) for i in range(1, 50)]
        others = [asyncio.create_task(physical.put(f"key/{i}", b"v")) for i in range(20)]
        await asyncio.sleep(0)
        backend.gate.set()
        indexes = await asyncio.gather(first, *rest, *others)
        return backend, physical, indexes

    backend, physical, indexes = asyncio.run(scenario())
    assert physical.applies == 2, backend.batches  # one for the first write, one for the 69 that queued
    assert backend.get("k") == b"49"  # arrival order kept inside the merged apply
    assert all(backend.get(f"key/{i}") == b"v" for i in range(20))
    assert indexes[0] == 1 and set(indexes[1:]) == {2}


def test_a_bad_transaction_fails_alone():
    async def scenario():
        physical = LocalPhysical(MemoryBackend())
        good = asyncio.create_task(physical.put("a", b"1"))
        bad = asyncio.create_task(physical.put("b", b"x" * (1024 * 1024 + 1)))
        results = await asyncio.gather(good, bad, return_exceptions=True)
        return physical, results

    physical, (good, bad) = asyncio.run(scenario())
    assert good == 1 and isinstance(bad, InvalidRequest) and "over 1048576" in str(bad)
    assert physical.backend.get("a") == b"1" and physical.backend.get("b") is None


class FailingBackend(MemoryBackend):
    def apply(self, index, ops, term=0):
        raise StoreFailed("disk full")


def test_a_failed_apply_fails_every_waiter_of_its_group():
    async def scenario():
        physical = LocalPhysical(FailingBackend())
        tasks = [asyncio.create_task(physical.put(f"k{i}", b"v")) for i in range(5)]
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(scenario())
    assert all(isinstance(result, InternalError) and "storage failed: disk full" in str(result) for result in results)


@pytest.mark.parametrize("count", [1, 3])
def test_an_idle_store_commits_each_write_at_once(count):
    async def scenario():
        physical = LocalPhysical(MemoryBackend())
        return [await physical.put(f"k{i}", b"v") for i in range(count)], physical

    indexes, physical = asyncio.run(scenario())
    assert indexes == list(range(1, count + 1)) and physical.applies == count


def test_a_full_write_queue_refuses_with_429_instead_of_growing(monkeypatch):
    from vaultd.core import physical as physical_module
    from vaultd.sdk.errors import TooManyRequests

    monkeypatch.setattr(physical_module, "pending_transactions_max", 3)

    async def scenario():
        backend = GatedBackend()
        physical = LocalPhysical(backend)
        tasks = [asyncio.create_task(physical.put(f"k{i}", b"v")) for i in range(5)]
        await asyncio.sleep(0)
        backend.gate.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(scenario())
    assert sum(isinstance(result, TooManyRequests) for result in results) == 2
    assert sum(isinstance(result, int) for result in results) == 3
