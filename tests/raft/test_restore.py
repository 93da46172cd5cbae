"""Restoring a snapshot through the log (raft/restore.py): staged chunks, one restore entry that installs the
same state on every node, keeps the replication layer's own records, and refuses a damaged upload alike."""

import asyncio
import hashlib
import io
import random

import pytest

from raft.command import Command, encode, staging_prefix
from raft.errors import CommandRejected
from raft.restore import chunk_bytes, chunks_per_command, propose_restore
from raft.state_machine import APPLIED, REJECTED, StateMachine
from storage import MemoryBackend
from storage.errors import SnapshotError

NOW = 1_700_000_000.0


def exported(pairs: dict[str, bytes]) -> bytes:
    source = MemoryBackend()
    source.apply(1, [("put", key, value) for key, value in pairs.items()])
    stream = io.BytesIO()
    source.export_snapshot(stream)
    return stream.getvalue()


def proposals(snapshot: bytes) -> list[Command]:
    """The commands propose_restore makes for `snapshot`, in order."""
    made = []

    async def propose(command: Command) -> int:
        made.append(command)
        return len(made)

    asyncio.run(propose_restore(propose, io.BytesIO(snapshot), random.Random(7), lambda: NOW))
    return made


def apply_all(machine: StateMachine, commands: list[Command], first_index: int) -> list:
    return [machine.apply(first_index + n, 3, encode(command)) for n, command in enumerate(commands)]


def test_a_restore_replaces_the_data_and_keeps_the_raft_records_identically_on_every_node():
    snapshot = exported({"core/keyring": b"old-ring", "logical/a": b"A", "_raft/config/servers/x": b"theirs"})
    commands = proposals(snapshot)
    assert [command.kind for command in commands] == ["stage", "restore"]
    stores = []
    for _ in range(2):  # two nodes applying the same log
        store = MemoryBackend()
        machine = StateMachine(store)
        observed = []
        machine.observer = lambda index, command, seen=observed: seen.append((index, command.kind))
        machine.apply(1, 1, encode(Command("write", [("put", "logical/b", b"B")], bytes(16), NOW)))
        machine.apply(2, 1, encode(Command("config", [("put", "_raft/config/servers/y", b"ours")], b"\1" * 16, NOW)))
        results = apply_all(machine, commands, 3)
        assert [result.outcome for result in results] == [APPLIED, APPLIED]
        assert (store.get("logical/a"), store.get("logical/b"), store.get("core/keyring")) == (b"A", None, b"old-ring")
        assert store.get("_raft/config/servers/y") == b"ours" and store.get("_raft/config/servers/x") is None
        assert store.list(staging_prefix) == []
        assert store.applied_index == 4
        assert machine.lookup(commands[-1].idempotency_id).raft_index == 4  # the restore is idempotent too
        assert observed[-1] == (4, "restore")
        stores.append(sorted((key, store.get(key)) for key in ["logical/a", "core/keyring", "_raft/config/servers/y"]))
    assert stores[0] == stores[1]


def test_a_large_snapshot_is_staged_in_several_chunks():
    snapshot = exported({f"logical/{n:04d}": bytes([n % 256]) * 100_000 for n in range(200)})
    commands = proposals(snapshot)
    chunks = -(-len(snapshot) // chunk_bytes)
    assert len(commands) == 1 + -(-chunks // chunks_per_command) and len(commands) > 2
    store = MemoryBackend()
    results = apply_all(StateMachine(store), commands, 1)
    assert all(result.outcome == APPLIED for result in results)
    assert store.get("logical/0199") == bytes([199]) * 100_000


def test_a_damaged_staging_is_refused_on_every_node_and_its_chunks_deleted():
    commands = proposals(exported({"logical/a": b"A"}))
    folder = commands[-1].ops[0][1]
    bad_digest = Command("restore", [("put", folder, hashlib.sha256(b"other").digest())], b"\2" * 16, NOW)
    store = MemoryBackend()
    machine = StateMachine(store)
    machine.apply(1, 1, encode(Command("write", [("put", "logical/kept", b"K")], b"\3" * 16, NOW)))
    results = apply_all(machine, [commands[0], bad_digest], 2)
    assert results[-1].outcome == REJECTED and "SHA-256" in results[-1].reason
    assert store.get("logical/kept") == b"K" and store.get("logical/a") is None
    assert store.list(staging_prefix) == []


def test_a_corrupt_upload_is_refused_before_anything_is_proposed():
    snapshot = bytearray(exported({"logical/a": b"A"}))
    snapshot[len(snapshot) // 2] ^= 0xFF
    with pytest.raises(SnapshotError):
        proposals(bytes(snapshot))


def test_restore_commands_name_only_the_staging_folder():
    with pytest.raises(CommandRejected):
        Command("restore", [("put", "logical/", b"x" * 32)], bytes(16), NOW)
    with pytest.raises(CommandRejected):
        Command("stage", [("put", "core/keyring", b"x")], bytes(16), NOW)
    with pytest.raises(CommandRejected):
        Command("write", [("put", staging_prefix + "x/1", b"x")], bytes(16), NOW)
