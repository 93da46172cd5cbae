"""One behaviour for every backend: LogStore and MemoryBackend pass the same tests.

It proves the Backend contract the layers above rely on: atomic batches, Vault's LIST semantics, typed
errors for bad input that change nothing, and snapshot streams that round-trip or are refused whole.
"""

import io

import pytest

from storage import (
    IndexNotMonotonic,
    InvalidBatch,
    KeyTooLarge,
    MemoryBackend,
    SnapshotError,
    ValueTooLarge,
    limits,
)
from storage.record import RecordType, frame_object


def contents(store, keys):
    return {key: store.get(key) for key in keys if store.get(key) is not None}


def test_put_get_delete_and_applied_index(backend):
    backend.apply(1, [("put", "a", b"1"), ("put", "b", b"2")], term=3)
    backend.apply(2, [("delete", "a", None), ("put", "b", b"22")], term=3)
    assert backend.get("a") is None
    assert backend.get("b") == b"22"
    assert backend.applied_index == 2
    assert backend.applied_term == 3


def test_later_op_of_one_batch_wins(backend):
    backend.apply(1, [("put", "k", b"first"), ("delete", "k", None), ("put", "k", b"last")])
    assert backend.get("k") == b"last"


def test_an_empty_batch_advances_the_index(backend):
    backend.apply(5, [])
    assert backend.applied_index == 5


def test_list_returns_immediate_children_with_folders(backend):
    keys = ["sys/policy/a", "sys/policy/b", "sys/token/id/x", "sys/token/id/y", "sys/z", "sys0", "sy"]
    backend.apply(1, [("put", key, b"v") for key in keys])
    assert backend.list("sys/") == ["policy/", "token/", "z"]
    assert backend.list("sys/token/") == ["id/"]
    assert backend.list("sys/policy/") == ["a", "b"]
    assert backend.list("") == ["sy", "sys/", "sys0"]
    assert backend.list("nothing/") == []


def test_list_forgets_a_folder_when_its_last_key_goes(backend):
    backend.apply(1, [("put", "a/b/c", b"v"), ("put", "a/d", b"v")])
    backend.apply(2, [("delete", "a/b/c", None)])
    assert backend.list("a/") == ["d"]


def test_list_of_many_children_in_order(backend):
    backend.apply(1, [("put", f"f/{i:04d}", b"v") for i in range(500)])
    backend.apply(2, [("put", f"f/{i:04d}/deep", b"v") for i in range(0, 500, 7)])
    children = backend.list("f/")
    assert children == sorted(children)
    assert len([c for c in children if c.endswith("/")]) == len(range(0, 500, 7))
    assert len(children) == 500 + len(range(0, 500, 7))


@pytest.mark.parametrize(
    ("ops", "error"),
    [
        ([("put", "k" * (limits.key_bytes_max + 1), b"v")], KeyTooLarge),
        ([("put", "k", b"v" * (limits.value_bytes_max + 1))], ValueTooLarge),
        ([("put", "", b"v")], InvalidBatch),
        ([("put", "k", "not bytes")], InvalidBatch),
        ([("delete", "k", b"v")], InvalidBatch),
        ([("merge", "k", b"v")], InvalidBatch),
        ([("put", "k")], InvalidBatch),
        ([("put", "\ud800", b"v")], InvalidBatch),
        ([("put", f"k{i}", b"") for i in range(limits.batch_ops_max + 1)], InvalidBatch),
    ],
)
def test_bad_batches_raise_typed_errors_and_change_nothing(backend, ops, error):
    backend.apply(1, [("put", "k", b"before")])
    good_then_bad = [("put", "other", b"x")] + ops
    with pytest.raises(error):
        backend.apply(2, good_then_bad)
    assert backend.get("k") == b"before"
    assert backend.get("other") is None
    assert backend.applied_index == 1


def test_a_key_and_value_at_the_limits_are_accepted(backend):
    key = "k" * limits.key_bytes_max
    backend.apply(1, [("put", key, b"v" * limits.value_bytes_max)])
    assert len(backend.get(key)) == limits.value_bytes_max


def test_non_monotonic_index_is_refused(backend):
    backend.apply(7, [("put", "k", b"1")])
    for index in (7, 6, 0):
        with pytest.raises(IndexNotMonotonic):
            backend.apply(index, [("put", "k", b"2")])
    assert backend.get("k") == b"1"
    assert backend.applied_index == 7


def _filled(store):
    store.apply(1, [("put", f"app/{i:03d}", bytes([i]) * (i + 1)) for i in range(200)])
    store.apply(2, [("delete", f"app/{i:03d}", None) for i in range(0, 200, 3)], term=2)
    return {f"app/{i:03d}": bytes([i]) * (i + 1) for i in range(200) if i % 3}


def test_snapshot_round_trips_between_backends(backend):
    expected = _filled(backend)
    stream = io.BytesIO()
    assert backend.export_snapshot(stream) == len(expected)
    other = MemoryBackend()
    other.apply(1, [("put", "stale", b"x")])
    stream.seek(0)
    other.restore(stream)
    assert contents(other, list(expected) + ["stale"]) == expected
    assert (other.applied_index, other.applied_term) == (2, 2)


def test_restore_replaces_the_backend_contents(backend):
    source = MemoryBackend()
    expected = _filled(source)
    stream = io.BytesIO()
    source.export_snapshot(stream)
    backend.apply(1, [("put", "stale", b"x")])
    stream.seek(0)
    backend.restore(stream)
    assert backend.get("stale") is None
    assert contents(backend, expected) == expected
    assert backend.applied_index == 2
    backend.apply(3, [("put", "after", b"y")])
    assert backend.get("after") == b"y"


def _damaged_streams():
    source = MemoryBackend()
    _filled(source)
    stream = io.BytesIO()
    source.export_snapshot(stream)
    good = stream.getvalue()
    forged_trailer = frame_object(RecordType.SNAPSHOT_TRAILER, {"count": 134, "sha256": b"0" * 32})
    trailer_at = len(good) - len(forged_trailer)
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x01
    return {
        "truncated": good[: len(good) - 10],
        "cut in half": good[: len(good) // 2],
        "forged trailer": good[:trailer_at] + forged_trailer,
        "bit flip": bytes(flipped),
        "trailing garbage": good + b"x",
        "empty": b"",
    }


@pytest.mark.parametrize("damage", list(_damaged_streams()))
def test_a_damaged_snapshot_is_refused_and_the_old_state_stays(backend, damage):
    backend.apply(1, [("put", "old", b"state")])
    with pytest.raises(SnapshotError):
        backend.restore(io.BytesIO(_damaged_streams()[damage]))
    assert backend.get("old") == b"state"
    assert backend.applied_index == 1
    backend.apply(2, [("put", "still", b"writable")])
    assert backend.get("still") == b"writable"
