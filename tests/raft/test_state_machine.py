"""The command codec and the state machine: apply is total, deterministic and idempotent.

How: the codec is round-tripped on examples and on hypothesis-generated commands, and fuzzed with random bytes
and random msgpack, where decode may only return a Command or raise CommandRejected. The state machine runs
over storage.MemoryBackend (and storage.LogStore in tmp_path for restarts); determinism is checked by feeding
two state machines the same log, garbage included, and comparing their export_snapshot streams byte for byte.
Randomised logs print their seed; SEED=n replays one.
"""

import contextlib
import io
import os
import random

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raft import limits
from raft.command import Command, command_version, decode, encode, new_idempotency_id
from raft.errors import CommandRejected, FatalApplyError, RaftError
from raft.state_machine import APPLIED, IGNORED, REJECTED, ApplyResult, StateMachine, idempotency_prefix
from storage import LogStore, MemoryBackend, StoreFailed
from storage import limits as storage_limits

NOW = 1_700_000_000.0


def ident(n: int) -> bytes:
    return n.to_bytes(limits.idempotency_id_bytes, "big")


def write(n: int, *ops) -> bytes:
    return encode(Command("write", list(ops), ident(n), NOW))


def noop(n: int = 0) -> bytes:
    return encode(Command("noop", [], ident(n), NOW))


def snapshot_bytes(store) -> bytes:
    buffer = io.BytesIO()
    store.export_snapshot(buffer)
    return buffer.getvalue()


@pytest.fixture
def rng() -> random.Random:
    seed = int(os.environ.get("SEED", "1"))
    print(f"SEED={seed}")
    return random.Random(seed)


# --- codec ----------------------------------------------------------------------------------------------------

keys = st.text(min_size=1, max_size=40).filter(lambda key: not key.startswith("_raft/"))
ops = st.one_of(
    st.tuples(st.just("put"), keys, st.binary(max_size=64)),
    st.tuples(st.just("delete"), keys, st.none()),
)
commands = st.builds(
    Command,
    kind=st.just("write"),
    ops=st.lists(ops, max_size=8),
    idempotency_id=st.binary(min_size=16, max_size=16),
    proposed_unix_seconds=st.floats(min_value=0, max_value=limits.proposed_unix_seconds_max),
)


def test_a_command_round_trips_with_a_leading_version_byte():
    command = Command("write", [("put", "a", b"1"), ("delete", "b", None)], ident(7), NOW)
    data = encode(command)
    assert data[0] == command_version
    assert decode(data) == command
    assert decode(bytearray(data)) == command
    assert decode(encode(Command("noop", [], ident(1), 0.0))).kind == "noop"
    assert decode(encode(Command("config", [("put", "_raft/config/peers", b"x")], ident(2), NOW))).kind == "config"


@given(commands)
def test_every_valid_command_round_trips(command):
    assert decode(encode(command)) == command


def test_the_idempotency_id_comes_from_the_given_random_source():
    assert new_idempotency_id(random.Random(5)) == new_idempotency_id(random.Random(5))
    assert len(new_idempotency_id(random.Random(5))) == 16


def body(*items) -> bytes:
    return bytes([command_version]) + msgpack.packb(list(items), use_bin_type=True)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        "text",
        None,
        b"\x02" + write(1, ("put", "a", b"1"))[1:],  # a version this node does not speak
        b"\x01\xc1",  # a msgpack byte that is never valid
        b"\x01" + msgpack.packb([1, 2, 3, 4, 5]) + b"\x00",  # trailing bytes
        body("write", [], ident(1)),  # three fields
        body("erase", [], ident(1), NOW),
        body("write", {}, ident(1), NOW),
        body("write", [["put", "a", "not bytes"]], ident(1), NOW),
        body("write", [["delete", "a", b"x"]], ident(1), NOW),
        body("write", [["put", "", b"x"]], ident(1), NOW),
        body("write", [["put", "a"]], ident(1), NOW),
        body("write", [["put", "_raft/idempotency/00", b"x"]], ident(1), NOW),  # forging the table
        body("config", [["put", "core/keyring", b"x"]], ident(1), NOW),
        body("noop", [["put", "a", b"x"]], ident(1), NOW),
        body("write", [], b"short", NOW),
        body("write", [], ident(1), 17),
        body("write", [], ident(1), float("nan")),
        body("write", [], ident(1), -1.0),
        body("write", [["put", "a", b""]] * (limits.command_ops_max + 1), ident(1), NOW),
        b"\x01" + b"\x91" * 100_000 + b"\x90",  # nesting deeper than the unpacker's stack
        b"\x01" + b"\x00" * limits.command_bytes_max,  # oversized
    ],
)
def test_decode_rejects_malformed_input_with_command_rejected(data):
    with pytest.raises(CommandRejected):
        decode(data)


def test_encode_refuses_an_oversized_command():
    value = b"x" * storage_limits.value_bytes_max
    command = Command("write", [("put", f"k{i}", value) for i in range(16)], ident(1), NOW)
    with pytest.raises(CommandRejected, match="over"):
        encode(command)


@settings(max_examples=500)
@given(st.binary(max_size=256))
def test_random_bytes_never_crash_decode(data):
    for candidate in (data, bytes([command_version]) + data):
        with contextlib.suppress(CommandRejected):
            assert isinstance(decode(candidate), Command)


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=12,
)


@settings(max_examples=500)
@given(st.lists(msgpack_values, min_size=0, max_size=5))
def test_random_msgpack_never_crashes_decode(items):
    with contextlib.suppress(CommandRejected):
        decode(body(*items))


def test_every_error_is_a_raft_error_and_says_whether_to_retry():
    from raft.errors import NotLeader, ProposalTimeout, QueueFull

    assert NotLeader("http://n2:8200").leader_api_addr == "http://n2:8200"
    assert NotLeader(None).retryable and QueueFull().retryable
    assert not ProposalTimeout().retryable and not CommandRejected("x").retryable
    assert all(issubclass(cls, RaftError) for cls in (NotLeader, QueueFull, ProposalTimeout, FatalApplyError))


# --- apply ----------------------------------------------------------------------------------------------------


def test_writes_land_and_advance_the_applied_index():
    store = MemoryBackend()
    machine = StateMachine(store)
    assert machine.apply(1, 1, write(1, ("put", "a", b"1"), ("put", "b", b"2"))) == ApplyResult(1, APPLIED)
    assert machine.apply(2, 1, write(2, ("delete", "a", None))).ok
    assert machine.apply(3, 2, noop()).ok
    assert (store.get("a"), store.get("b")) == (None, b"2")
    assert (store.applied_index, store.applied_term) == (3, 2)
    assert machine.lookup(ident(2)) == ApplyResult(2, APPLIED)
    assert machine.lookup(ident(0)) is None  # noops are not recorded


def test_entries_at_or_below_the_applied_index_are_ignored_as_replays():
    store = MemoryBackend()
    machine = StateMachine(store)
    machine.apply(1, 1, write(1, ("put", "a", b"1")))
    machine.apply(2, 1, write(2, ("put", "a", b"2")))
    before = snapshot_bytes(store)
    assert machine.apply(1, 1, write(1, ("put", "a", b"1"))).outcome == IGNORED
    assert machine.apply(2, 1, b"garbage").outcome == IGNORED
    assert snapshot_bytes(store) == before


@pytest.mark.parametrize("data", [b"", b"\x00garbage", b"\x01\xc1", "not bytes", None])
def test_a_malformed_command_is_rejected_and_still_advances_the_index(data):
    store = MemoryBackend()
    machine = StateMachine(store)
    result = machine.apply(1, 3, data)
    assert result.outcome == REJECTED and result.reason
    assert (store.applied_index, store.applied_term, len(store)) == (1, 3, 0)
    assert machine.apply(2, 3, write(1, ("put", "a", b"1"))).ok


def random_log(rng: random.Random, length: int) -> list[bytes]:
    log = []
    for n in range(length):
        roll = rng.random()
        if roll < 0.15:
            log.append(rng.randbytes(rng.randrange(0, 40)))
        elif roll < 0.2:
            log.append(bytes([command_version]) + rng.randbytes(rng.randrange(0, 40)))
        elif roll < 0.25:
            log.append(write(n, ("put", "k" * (storage_limits.key_bytes_max + 1), b"x")))
        elif roll < 0.3 and log:
            log.append(rng.choice(log))  # a retry of an earlier entry, same id
        elif roll < 0.35:
            log.append(noop(n))
        else:
            key = f"secret/{rng.randrange(8)}"
            op = ("delete", key, None) if rng.random() < 0.3 else ("put", key, rng.randbytes(8))
            log.append(write(n, op))
    return log


def test_two_state_machines_fed_the_same_log_end_byte_identical(rng):
    log = random_log(rng, 400)
    stores = [MemoryBackend(), MemoryBackend()]
    results = []
    for store in stores:
        machine = StateMachine(store, ids_kept_max=50)
        results.append([machine.apply(index, 1 + index // 100, data) for index, data in enumerate(log, start=1)])
    assert results[0] == results[1]
    assert {result.outcome for result in results[0]} == {APPLIED, REJECTED}
    assert stores[0].applied_index == len(log)
    assert snapshot_bytes(stores[0]) == snapshot_bytes(stores[1])
    assert len(stores[0].list(idempotency_prefix)) == 50


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=64), max_size=20))
def test_apply_never_raises_on_arbitrary_entries(entries):
    store = MemoryBackend()
    machine = StateMachine(store)
    for index, data in enumerate(entries, start=1):
        assert machine.apply(index, 1, data).raft_index == index
    assert store.applied_index == len(entries)


def test_the_same_id_twice_applies_once_and_returns_the_same_result():
    store = MemoryBackend()
    machine = StateMachine(store)
    first = machine.apply(1, 1, write(1, ("put", "a", b"first")))
    machine.apply(2, 1, write(2, ("put", "a", b"second")))
    again = machine.apply(3, 1, write(1, ("put", "a", b"first")))
    assert again == first == ApplyResult(1, APPLIED)
    assert store.get("a") == b"second"
    assert store.applied_index == 3


def test_idempotency_survives_a_restart_over_a_log_store(tmp_path):
    directory = str(tmp_path / "store")
    with LogStore.open(directory, background=False) as store:
        machine = StateMachine(store)
        first = machine.apply(1, 1, write(1, ("put", "a", b"first")))
        machine.apply(2, 1, write(2, ("put", "a", b"second")))
    with LogStore.open(directory, background=False) as store:
        machine = StateMachine(store)
        assert machine.lookup(ident(1)) == first
        assert machine.apply(1, 1, write(1, ("put", "a", b"first"))).outcome == IGNORED  # journal replay
        assert machine.apply(3, 2, write(1, ("put", "a", b"first"))) == first  # a client's retry
        assert store.get("a") == b"second"
        assert (store.applied_index, store.applied_term) == (3, 2)


def test_the_table_travels_in_snapshots():
    source = MemoryBackend()
    first = StateMachine(source).apply(1, 1, write(1, ("put", "a", b"1")))
    target = MemoryBackend()
    machine = StateMachine(target)
    target.restore(io.BytesIO(snapshot_bytes(source)))
    machine.reload()
    assert machine.apply(2, 1, write(1, ("put", "a", b"1"))) == first


def test_the_oldest_ids_are_evicted_by_raft_index_and_then_apply_again():
    store = MemoryBackend()
    machine = StateMachine(store, ids_kept_max=3)
    for n in range(1, 6):
        machine.apply(n, 1, write(n, ("put", f"k{n}", b"v")))
    kept = sorted(bytes.fromhex(name) for name in store.list(idempotency_prefix))
    assert kept == [ident(3), ident(4), ident(5)]
    assert machine.lookup(ident(2)) is None
    assert StateMachine(store, ids_kept_max=3).lookup(ident(3)) == ApplyResult(3, APPLIED)
    store.apply(6, [("delete", "k1", None)], 1)
    assert machine.apply(7, 1, write(1, ("put", "k1", b"v"))) == ApplyResult(7, APPLIED)  # forgotten: again
    assert store.get("k1") == b"v"


def test_an_invalid_batch_is_rejected_deterministically_and_remembered():
    too_long = "k" * (storage_limits.key_bytes_max + 1)
    entries = [write(1, ("put", "ok", b"1"), ("put", too_long, b"x")), write(1, ("put", "ok", b"1"))]
    stores = [MemoryBackend(), MemoryBackend()]
    for store in stores:
        machine = StateMachine(store)
        rejected = machine.apply(1, 1, entries[0])
        assert rejected.outcome == REJECTED and "key of" in rejected.reason
        assert machine.apply(2, 1, entries[1]) == rejected  # a retry with the same id gets the same answer
        assert (store.get("ok"), store.applied_index) == (None, 2)
    assert snapshot_bytes(stores[0]) == snapshot_bytes(stores[1])


def test_only_config_commands_write_under_the_reserved_prefix():
    store = MemoryBackend()
    machine = StateMachine(store)
    assert machine.apply(1, 1, encode(Command("config", [("put", "_raft/config/peers", b"n1")], ident(1), NOW))).ok
    forged = body("write", [["put", idempotency_prefix + ident(9).hex(), b"\x93\x01\xa7applied\xa0"]], ident(2), NOW)
    assert machine.apply(2, 1, forged).outcome == REJECTED
    assert store.get("_raft/config/peers") == b"n1"
    assert machine.lookup(ident(9)) is None


class FailingStore(MemoryBackend):
    """A store whose disk is full: every apply raises StoreFailed, as LogStore does after a failed fsync."""

    def apply(self, index, ops, term=0):
        raise StoreFailed("No space left on device on segment 7")


@pytest.mark.parametrize("data", [write(1, ("put", "a", b"1")), b"garbage", noop()])
def test_a_store_failure_stops_the_node_with_fatal_apply_error(data):
    machine = StateMachine(FailingStore())
    with pytest.raises(FatalApplyError, match="No space left") as caught:
        machine.apply(1, 1, data)
    assert caught.value.raft_index == 1
    assert isinstance(caught.value.__cause__, StoreFailed)
    assert machine.lookup(ident(1)) is None  # nothing remembered for a write that did not land
