"""Crash at every step, lose power, reopen: every acknowledged batch is there, nothing extra, nothing resurrected.

The simulated disk (simulated_disk.py) keeps only what was fsynced, tears what was not, and undoes directory
changes that no directory fsync made durable. For each scenario (apply with segment rolls, compaction,
snapshot install, and reopening itself) the test crashes at the 1st, 2nd, … mutating disk operation until
the scenario runs through, and after each crash checks the reopened store against a model. Then it checks
the store's answer to a full disk and a failing fsync: it refuses writes and never retries an fsync.
"""

import errno
import io
import random

import pytest

from storage import LogStore, MemoryBackend, StoreFailed

from .simulated_disk import SimulatedCrash, SimulatedDisk

DATA = "/data/store"
SEGMENT_BYTES = 1024
KEYS = [f"app/{name}" for name in ("a", "b", "c", "d/e", "d/f")]


def fresh_disk() -> SimulatedDisk:
    disk = SimulatedDisk()
    disk.mkdir("/data")
    disk.fsync_dir("/")
    return disk


def open_store(disk: SimulatedDisk) -> LogStore:
    return LogStore.open(DATA, fileops=disk, background=False, segment_bytes_max=SEGMENT_BYTES)


def batch(index: int) -> list:
    """A deterministic batch: overwrites and deletes over a few keys, values of varying size."""
    rng = random.Random(index)
    ops = []
    for _ in range(rng.randint(1, 3)):
        key = rng.choice(KEYS)
        if rng.random() < 0.3:
            ops.append(("delete", key, None))
        else:
            ops.append(("put", key, bytes([index % 256]) * rng.randint(1, 300)))
    return ops


def model_states(last: int) -> list[dict]:
    """states[i] = the contents after applying batches 1..i."""
    states, current = [{}], {}
    for index in range(1, last + 1):
        for op, key, value in batch(index):
            if op == "put":
                current[key] = value
            else:
                current.pop(key, None)
        states.append(dict(current))
    return states


def contents(store) -> dict:
    return {key: store.get(key) for key in KEYS if store.get(key) is not None}


def crash_points(scenario, limit: int = 2000):
    """Run `scenario(disk, n)` with a crash after n operations for n = 0, 1, … until it completes."""
    for operations in range(limit):
        disk = fresh_disk()
        completed = scenario(disk, operations)
        yield operations, disk
        if completed:
            return
    raise AssertionError(f"the scenario did not complete within {limit} operations")


def run_until_crash(disk: SimulatedDisk, operations: int, action) -> bool:
    disk.crash_after(operations)
    try:
        action()
    except SimulatedCrash:
        return False
    disk.countdown = None
    return True


def test_apply_with_segment_rolls_survives_a_crash_anywhere(rng):
    last = 40
    states = model_states(last)
    checked = 0
    for operations, disk, acknowledged in _apply_crashes(last):
        disk.power_loss(random.Random(rng.random()))
        store = open_store(disk)
        recovered = store.applied_index
        # what was acknowledged survives; at most the one batch in flight is there besides
        assert acknowledged <= recovered <= min(acknowledged + 1, last), operations
        assert contents(store) == states[recovered], operations
        store.apply(recovered + 1, [("put", "after/crash", b"ok")])
        assert store.get("after/crash") == b"ok"
        store.close()
        checked += 1
    assert checked > last


def _apply_crashes(last: int):
    for operations in range(5000):
        disk = fresh_disk()
        acknowledged = 0

        def apply_all(disk=disk):
            nonlocal acknowledged
            store = open_store(disk)
            for index in range(1, last + 1):
                store.apply(index, batch(index))
                acknowledged = index
            store.close()

        completed = run_until_crash(disk, operations, apply_all)
        yield operations, disk, acknowledged
        if completed:
            return
    raise AssertionError("apply never completed")


def _store_with_history(disk: SimulatedDisk, last: int) -> LogStore:
    store = open_store(disk)
    for index in range(1, last + 1):
        store.apply(index, batch(index))
    # a key put then deleted in sealed segments: compaction must never bring it back
    store.apply(last + 1, [("put", "app/ghost", b"boo")])
    for index in range(last + 2, last + 8):
        store.apply(index, [("put", "app/filler", b"f" * 200)])
    store.apply(last + 8, [("delete", "app/ghost", None)])
    return store


def test_compaction_survives_a_crash_anywhere_and_deleted_keys_stay_deleted(rng):
    last = 30
    expected = model_states(last)[last] | {"app/filler": b"f" * 200}
    points = 0
    for operations in range(5000):
        disk = fresh_disk()
        store = _store_with_history(disk, last)
        store.maintain()
        completed = run_until_crash(disk, operations, lambda store=store: store.compact(include_active=True))
        disk.power_loss(random.Random(rng.random()))
        reopened = open_store(disk)
        assert contents(reopened) | _extra(reopened) == expected, operations
        assert reopened.get("app/ghost") is None, operations
        assert reopened.applied_index == last + 8
        reopened.close()
        points += 1
        if completed:
            break
    assert points > 10


def _extra(store) -> dict:
    return {key: store.get(key) for key in ("app/filler", "app/ghost") if store.get(key) is not None}


def _snapshot_of(states: dict, index: int) -> bytes:
    source = MemoryBackend()
    source.apply(index, [("put", key, value) for key, value in sorted(states.items())])
    stream = io.BytesIO()
    source.export_snapshot(stream)
    return stream.getvalue()


def test_snapshot_install_survives_a_crash_anywhere(rng):
    old_state = model_states(20)[20]
    new_state = {"app/a": b"new", "app/d/e": b"new too"}
    stream = _snapshot_of(new_state, 500)
    outcomes = set()
    for operations in range(5000):
        disk = fresh_disk()
        store = open_store(disk)
        for index in range(1, 21):
            store.apply(index, batch(index))
        completed = run_until_crash(disk, operations, lambda store=store: store.restore(io.BytesIO(stream)))
        disk.power_loss(random.Random(rng.random()))
        reopened = open_store(disk)
        state = (contents(reopened), reopened.applied_index)
        assert state in [(old_state, 20), (new_state, 500)], operations
        outcomes.add(state[1])
        reopened.close()
        if completed:
            break
    assert outcomes == {20, 500}


def test_reopening_survives_a_crash_anywhere(rng):
    """A crash while recovering from a crash (truncating a torn tail, settling compaction) loses nothing."""
    states = model_states(25)
    for operations in range(5000):
        disk = fresh_disk()
        store = open_store(disk)
        for index in range(1, 26):
            store.apply(index, batch(index))
        disk.crash_after(0)
        with pytest.raises(SimulatedCrash):
            store.apply(26, [("put", "app/torn", b"x" * 500)])
        disk.power_loss(random.Random(rng.random()))
        completed = run_until_crash(disk, operations, lambda disk=disk: open_store(disk).close())
        disk.power_loss(random.Random(rng.random()))
        reopened = open_store(disk)
        assert contents(reopened) == states[25] and reopened.applied_index == 25, operations
        reopened.close()
        if completed:
            break


def test_a_full_disk_fails_the_store_and_loses_nothing_acknowledged():
    disk = fresh_disk()
    store = open_store(disk)
    store.apply(1, [("put", "app/a", b"kept")])
    disk.inject("write", errno.ENOSPC)
    with pytest.raises(StoreFailed, match="No space left"):
        store.apply(2, [("put", "app/b", b"x" * 100)])
    with pytest.raises(StoreFailed):
        store.apply(3, [("put", "app/c", b"y")])
    assert store.get("app/a") == b"kept"
    assert store.get("app/b") is None
    store.close()
    disk.power_loss(random.Random(0))
    reopened = open_store(disk)
    assert contents(reopened) == {"app/a": b"kept"}
    reopened.apply(2, [("put", "app/b", b"after space was freed")])
    assert reopened.get("app/b") == b"after space was freed"


def test_a_failing_fsync_is_never_retried():
    disk = fresh_disk()
    store = open_store(disk)
    store.apply(1, [("put", "app/a", b"kept")])
    disk.inject("fsync", errno.EIO)
    with pytest.raises(StoreFailed, match="Input/output error"):
        store.apply(2, [("put", "app/b", b"x")])
    syncs = disk.sync_calls
    for index in range(3, 6):
        with pytest.raises(StoreFailed):
            store.apply(index, [("put", "app/c", b"y")])
    assert disk.sync_calls == syncs
    assert store.applied_index == 1
    store.close()
    disk.power_loss(random.Random(0))
    assert open_store(disk).applied_index == 1


def test_a_full_disk_during_compaction_abandons_it_and_keeps_serving():
    disk = fresh_disk()
    store = _store_with_history(disk, 30)
    before = contents(store) | _extra(store)
    store.maintain()
    disk.inject("write", errno.ENOSPC)
    with pytest.raises(OSError):
        store.compact()
    assert not [name for name in disk.listdir(store.generation_dir) if name.endswith(".tmp")]
    assert contents(store) | _extra(store) == before
    store.apply(100, [("put", "app/a", b"still writable")])
    store.compact()
    assert store.get("app/a") == b"still writable"


def test_a_full_disk_during_snapshot_install_keeps_the_old_state():
    disk = fresh_disk()
    store = open_store(disk)
    store.apply(1, [("put", "app/a", b"old")])
    disk.inject("write", errno.ENOSPC)
    with pytest.raises(OSError):
        store.restore(io.BytesIO(_snapshot_of({"app/a": b"new"}, 9)))
    assert store.get("app/a") == b"old"
    store.close()
    disk.power_loss(random.Random(0))
    reopened = open_store(disk)
    assert (reopened.get("app/a"), reopened.applied_index) == (b"old", 1)
