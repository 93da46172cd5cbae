"""Applies, reads and compaction at once, as in a node: the Raft thread applies while the maintenance
thread compacts and the event loop reads. Compaction's compare-and-set must never lose a newer write or
serve a value that was never written; the background thread must start and stop with the store.

Bounded by counts, not time: the writer applies a fixed number of batches, then everyone stops.
"""

import io
import random
import threading

from storage import LogStore

keys = [f"app/{i}" for i in range(50)]
applies = 1500


def value_for(key: str, index: int) -> bytes:
    return f"{key}@{index}".encode() * 4


def test_applies_reads_and_compaction_at_once_lose_nothing(tmp_path, rng):
    store = LogStore.open(str(tmp_path / "s"), background=False, segment_bytes_max=8 * 1024)
    model: dict[str, bytes] = {}
    done = threading.Event()
    problems = []

    def writer():
        local = random.Random(rng.random())
        try:
            for index in range(1, applies + 1):
                key = local.choice(keys)
                if local.random() < 0.2:
                    store.apply(index, [("delete", key, None)])
                    model.pop(key, None)
                else:
                    store.apply(index, [("put", key, value_for(key, index))])
                    model[key] = value_for(key, index)
        finally:
            done.set()

    def reader():
        local = random.Random(rng.random())
        while not done.is_set():
            key = local.choice(keys)
            value = store.get(key)
            if value is not None and not value.startswith(f"{key}@".encode()):
                problems.append((key, value))

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for thread in threads:
        thread.start()
    compactions = 0
    while not done.is_set():
        store.compact(include_active=compactions % 2 == 0)
        store.maintain()
        compactions += 1
    for thread in threads:
        thread.join()
    assert problems == []
    assert compactions > 1
    assert {key: store.get(key) for key in keys if store.get(key) is not None} == model
    store.close()
    with LogStore.open(str(tmp_path / "s"), background=False) as reopened:
        assert {key: reopened.get(key) for key in keys if reopened.get(key) is not None} == model
        assert reopened.applied_index == applies


def test_the_background_thread_stops_with_the_store(tmp_path):
    store = LogStore.open(str(tmp_path / "s"), background=True)
    store.apply(1, [("put", "k", b"v")])
    thread = store._maintenance_thread
    assert thread is not None and thread.is_alive()
    store.close()
    assert not thread.is_alive()
    with LogStore.open(str(tmp_path / "s"), background=True) as reopened:
        assert reopened.get("k") == b"v"


def test_reads_during_a_restore_see_the_old_state_or_the_new_one(tmp_path):
    """A node's event loop reads while its Raft thread installs a snapshot: every read must answer from one
    generation or the other, never fail (jepsen_lite caught a KeyError: the index still named a segment whose
    reader the restore had already closed)."""
    source = LogStore.open(str(tmp_path / "source"), background=False)
    for index, key in enumerate(keys, start=1):
        source.apply(index, [("put", key, value_for(key, 10_000 + index))])
    stream = io.BytesIO()
    source.export_snapshot(stream)
    source.close()
    store = LogStore.open(str(tmp_path / "s"), background=False, segment_bytes_max=8 * 1024)
    for index in range(1, 400):
        key = keys[index % len(keys)]
        store.apply(index, [("put", key, value_for(key, index))])
    done = threading.Event()
    problems, reads = [], [0]

    def reader():
        while not done.is_set():
            for key in keys:
                try:
                    value = store.get(key)
                except Exception as error:  # any failure is the finding
                    problems.append(repr(error))
                    continue
                reads[0] += 1
                if value is None or not value.startswith(f"{key}@".encode()):
                    problems.append((key, value))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(20):
            stream.seek(0)
            store.restore(stream)
    finally:
        done.set()
        thread.join()
    assert problems == [] and reads[0] > 0
    assert store.get(keys[0]) == value_for(keys[0], 10_001)
    store.close()
