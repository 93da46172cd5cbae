"""Raft snapshots that are our store's export stream, never a pickle (DESIGN.md §Raft hardening 5).

raft/node.py plugs `write` and `load` into pysyncobj's `serializer`/`deserializer` conf hooks. This module does
not import pysyncobj: it handles pysyncobj's log entries as plain `(command, index, term)` tuples.

What pysyncobj 0.3.17 hands over and expects back (serializer.py:86-111, syncobj.py:1455-1505):

* On compaction, on the tick thread: `serializer(fullDumpFile + ".tmp", (last, prev, cluster))`, where `last`
  is the journal entry at `raftLastApplied`, `prev` the one before it, each `(command_bytes, index, term)`, and
  `cluster` the set of TCPNode members. Its own `data[0]` (the pickled `SyncObj.__dict__`) is None with a
  custom serializer and is never written. pysyncobj then renames `.tmp` over `fullDumpFile` and, on the next
  tick, drops the journal entries before `prev`.
* On load (startup, or a snapshot streamed from the leader): `deserializer(fullDumpFile)` must install the
  state and return `(last, prev, cluster)`; pysyncobj puts `prev` and `last` into the journal (after clearing
  it when it came from the leader, or when they differ from its first two entries) and sets
  `raftLastApplied = last.index`.
* Shipping: the leader streams the dump file's bytes verbatim, in `logCompactionBatchSize` chunks inside its
  (Fernet-authenticated) AppendEntries messages; the follower writes them to `fullDumpFile + ".1.tmp"`,
  renames it over `fullDumpFile` and calls the deserializer. Nothing of the file is unpickled on the way.

File layout (all ours; pysyncobj writes nothing into it):

    store export stream     storage/snapshot.py: SNAPSHOT_HEADER, SNAPSHOT_CHUNKs, SNAPSHOT_TRAILER (SHA-256)
    raft position           msgpack {v, last: [command, index, term], prev: [...], members: [address, ...]}
    footer (52 bytes)       magic b"VDRSNAP1" | u64 stream bytes | u32 position bytes | SHA-256(u64 + position)

The two entries' `command` bytes are carried as opaque msgpack bin because pysyncobj compares them with its
journal at startup (a mismatch clears the journal, which would drop entries after the snapshot) and may send
`last` to a follower as an AppendEntries entry. For a `_apply_entry` call they are pysyncobj's own
`b"\\x00" + pickle.dumps((method_id, (data,)))`, i.e. the same bytes the journal holds and AppendEntries carry.
They are never unpickled here. `load` and `write` scan them with `pickletools.genops` (which executes nothing)
and refuse any entry that could build an object: the only global allowed is `_codecs encode`, which pysyncobj's
protocol-2 pickle uses for every `bytes` argument (`c_codecs\nencode` ... `REDUCE`), so the only call a
snapshot's entry can make is `_codecs.encode(str, "latin1")`; STACK_GLOBAL, INST, OBJ, NEWOBJ(_EX), BUILD,
EXT*, PERSID are refused outright. A snapshot therefore neither carries nor smuggles a pickled pysyncobj (or
any other) object.
"""

import dataclasses
import hashlib
import io
import os
import pickletools
import struct
from typing import BinaryIO

import msgpack

from storage.errors import SnapshotError
from storage.snapshot import StreamReader

Entry = tuple[bytes, int, int]

position_format_version = 1
FOOTER = struct.Struct(">8sQI32s")
FOOTER_MAGIC = b"VDRSNAP1"
position_bytes_max = 1 << 20
# pysyncobj's command types (syncobj.py _COMMAND_TYPE): REGULAR=0, NO_OP=1, MEMBERSHIP=2, VERSION=3.
_pickled_command_types = (0, 3)
_no_op_command_type = 1
_object_opcodes = frozenset(
    {"STACK_GLOBAL", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "BUILD", "EXT1", "EXT2", "EXT4", "PERSID", "BINPERSID"}
)
_allowed_global = "_codecs encode"  # how pickle protocol 2 (pysyncobj.pickle) encodes a bytes object


@dataclasses.dataclass(frozen=True)
class RaftPosition:
    """pysyncobj's bookkeeping stored with a snapshot: the last applied entry, the one before, the members."""

    last: Entry
    prev: Entry
    members: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class LoadResult:
    position: RaftPosition
    store_index: int  # the raft index the store stream reflects (>= position.last index)
    restored: bool  # False when the store was already at or past it and was left alone


def check_entry(entry: object) -> Entry:
    """`entry` as an `(command, index, term)` tuple whose command cannot build an object; else SnapshotError."""
    if not isinstance(entry, (list, tuple)) or len(entry) != 3:
        raise SnapshotError(f"a raft entry must be [command, index, term], not {entry!r:.80}")
    command, index, term = entry
    if not isinstance(command, bytes) or type(index) is not int or type(term) is not int:
        raise SnapshotError("a raft entry has fields of the wrong types")
    if index < 1 or term < 0 or not command:
        raise SnapshotError(f"a raft entry has index {index}, term {term}, {len(command)} command bytes")
    kind = command[0]
    if kind == _no_op_command_type:
        if len(command) != 1:
            raise SnapshotError("a no-op raft entry carries a payload")
    elif kind in _pickled_command_types:
        _check_plain_pickle(command[1:])
    else:  # MEMBERSHIP pickles TCPNode objects; dynamic membership is off, so it never appears
        raise SnapshotError(f"a raft entry of command type {kind} cannot be in a snapshot")
    return command, index, term


def _check_plain_pickle(payload: bytes) -> None:
    try:
        opcodes = [(opcode.name, arg) for opcode, arg, _ in pickletools.genops(payload)]
    except Exception as error:  # genops raises ValueError and friends on a malformed pickle; it executes nothing
        raise SnapshotError(f"a raft entry's command is not a well-formed pickle: {error}") from None
    bad = {name for name, _ in opcodes if name in _object_opcodes}
    bad.update(f"GLOBAL {arg}" for name, arg in opcodes if name == "GLOBAL" and arg != _allowed_global)
    if bad:
        raise SnapshotError(f"a raft entry's command would build objects ({', '.join(sorted(bad))})")


def _encode_position(position: RaftPosition) -> bytes:
    return msgpack.packb(
        {
            "v": position_format_version,
            "last": list(check_entry(position.last)),
            "prev": list(check_entry(position.prev)),
            "members": list(position.members),
        },
        use_bin_type=True,
    )


def _decode_position(raw: bytes) -> RaftPosition:
    try:
        fields = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except (ValueError, msgpack.UnpackException) as error:
        raise SnapshotError(f"undecodable raft position: {error}") from None
    if not isinstance(fields, dict) or fields.get("v") != position_format_version:
        raise SnapshotError("unknown raft position format")
    last, prev = check_entry(fields.get("last")), check_entry(fields.get("prev"))
    if prev[1] + 1 != last[1] or prev[2] > last[2]:
        raise SnapshotError(f"raft position entries {prev[1]}/{last[1]} are not consecutive")
    members = fields.get("members")
    if not isinstance(members, list) or not all(isinstance(member, str) for member in members):
        raise SnapshotError("raft position members must be a list of addresses")
    return RaftPosition(last, prev, tuple(members))


def write(path: str, store, position: RaftPosition) -> int:
    """Write `store`'s export stream plus `position` to `path`, fsynced. Returns the number of keys exported.

    `store.export_snapshot` takes its own consistent view; the stream's index is the store's applied index,
    which is >= `position.last` index (the node applies synchronously, and after a restart the store may be
    ahead of pysyncobj's replay).
    """
    encoded = _encode_position(position)
    with open(path, "wb") as fileobj:
        count = store.export_snapshot(fileobj)
        stream_bytes = fileobj.tell()
        fileobj.write(encoded)
        fileobj.write(_footer(stream_bytes, encoded))
        fileobj.flush()
        os.fsync(fileobj.fileno())
    return count


def _footer(stream_bytes: int, encoded: bytes) -> bytes:
    digest = hashlib.sha256(struct.pack(">Q", stream_bytes) + encoded).digest()
    return FOOTER.pack(FOOTER_MAGIC, stream_bytes, len(encoded), digest)


def read_position(fileobj: BinaryIO) -> tuple[RaftPosition, int]:
    """The verified raft position of an open snapshot file, and the length of its store stream."""
    size = fileobj.seek(0, os.SEEK_END)
    if size < FOOTER.size:
        raise SnapshotError(f"a raft snapshot of {size} bytes is truncated")
    fileobj.seek(size - FOOTER.size)
    magic, stream_bytes, position_bytes, digest = FOOTER.unpack(fileobj.read(FOOTER.size))
    if magic != FOOTER_MAGIC:
        raise SnapshotError("not a vaultd raft snapshot (bad footer magic)")
    if position_bytes > position_bytes_max or stream_bytes + position_bytes + FOOTER.size != size:
        raise SnapshotError("the raft snapshot's footer lengths do not match its size")
    fileobj.seek(stream_bytes)
    encoded = fileobj.read(position_bytes)
    if hashlib.sha256(struct.pack(">Q", stream_bytes) + encoded).digest() != digest:
        raise SnapshotError("the raft snapshot's position fails its SHA-256")
    return _decode_position(encoded), stream_bytes


class _Window(io.RawIOBase):
    """A read-only view of `fileobj[0:length]`, so the store reads exactly the stream (it refuses trailing data)."""

    def __init__(self, fileobj: BinaryIO, length: int):
        self._fileobj, self._left = fileobj, length
        fileobj.seek(0)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = self._left if size is None or size < 0 else min(size, self._left)
        data = self._fileobj.read(size)
        self._left -= len(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def load(path: str, store, state_machine) -> LoadResult:
    """Install the snapshot at `path` into `store` unless the store already is at or past it; verify first.

    Raises SnapshotError (the old store state stays: `store.restore` is atomic) on any defect. After a restore
    the state machine's idempotency table is reloaded from the store.
    """
    with open(path, "rb") as fileobj:
        position, stream_bytes = read_position(fileobj)
        store_index = StreamReader(_Window(fileobj, stream_bytes)).index  # checks the stream's header
        if type(store_index) is not int or store_index < position.last[1]:
            raise SnapshotError(f"the store stream (index {store_index}) is behind raft index {position.last[1]}")
        if store.applied_index >= store_index:
            return LoadResult(position, store_index, False)
        store.restore(_Window(fileobj, stream_bytes))
    state_machine.reload()
    return LoadResult(position, store_index, True)
