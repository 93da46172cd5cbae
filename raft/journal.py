"""A durable Raft journal with pysyncobj's journal interface, and the durable term and vote (`RaftMeta`).

pysyncobj's own `FileJournal` writes through an mmap and never syncs (see shared/reference/pysyncobj.md §3).
`DurableJournal` keeps its contract but makes the disk state explicit:

* `add` only buffers. `flush()` makes every buffered entry durable with one `write` and one `fsync`. The node
  must call it before any message leaves the node (an AppendEntries ack, a vote, a heartbeat that carries a
  commit index), once per tick; it is a no-op when nothing is buffered.
* `deleteEntriesFrom` (a follower drops a conflicting suffix), `deleteEntriesTo` (log compaction) and `clear`
  are durable when they return: when they touch entries already in the file, the file is rewritten into
  `<path>.tmp`, fsynced, renamed over `<path>` and the directory fsynced, so a crash leaves the old or the new
  log, never a mix. Dropping entries that are still only buffered costs no I/O.
* `setCurrentTerm` persists term and vote atomically (`RaftMeta`) before it returns.
* The commit index is kept in memory only (`getRaftCommitIndex` is 1 after a restart, as for pysyncobj's
  MemoryJournal): Raft does not need it durable, and a restarted node learns it again from the leader.

Plugging it into pysyncobj 0.3.17. There is no journal option in `SyncObjConf`: `syncobj.py` binds the name
at import (`from .journal import createJournal`, line 41) and calls it once in `SyncObj.__init__`
(`self.__raftLog = createJournal(self.__conf.journalFile)`, line 166), then reads `len()`, `getCurrentTerm()`,
`getVotedForNodeId()` and `getRaftCommitIndex()` from it (lines 167-176). So raft/node.py replaces the module
attribute `pysyncobj.syncobj.createJournal` (patching `pysyncobj.journal.createJournal` has no effect) with a
factory that returns `DurableJournal(journalFile)` and keeps a reference to it, before constructing the
SyncObj. pysyncobj never calls `flush()`; and a follower's AppendEntries reply is sent straight from
`__onMessageReceived` (`__sendNextNodeIdx`, line ~1018), not at the end of the tick. So node.py must call
`flush()` in front of the transport's `send` (cheap: a no-op when nothing is pending), or hold outgoing
messages until the tick's flush.

Files (all I/O through a FileOps, `storage.fileops.OsFileOps` by default):

    <path>            header record, then one record per entry, append-only; rewritten on open
    <path>.meta       one RAFT_META record {format, version, term, voted_for}
    <path>.tmp, <path>.meta.tmp   rewrites in progress; removed on open

Records are `storage.record.frame`s (CRC32 over length, type and payload). Header (SEGMENT_HEADER):
{"format": "vaultd-raft-journal", "version": 1, "nonce": u64}. Entry (ENTRY; not the storage engine's ENTRY
payload): msgpack [nonce, index, term, command]. The nonce is random per file and never leaves the node, so
a command that embeds well-formed records (client data) cannot pass for an entry of this file.

Recovery on open keeps the longest valid prefix. A bad record with no valid entry of this file after it is
a torn tail and is dropped; a bad record followed by a valid entry is mid-file corruption and raises
`JournalCorrupt` (the node must not silently lose acknowledged entries). The file is then rewritten (that
also yields the append descriptor: FileOps has no seek), so a crash during recovery is harmless too.

After a failed write, fsync or rewrite the journal is poisoned (`JournalFailed`): the file may end in a
partial record and its durable state is unknown (an fsync error can drop dirty pages). The node must stop;
reopening recovers the valid prefix.
"""

import os

import msgpack

from storage import limits
from storage.fileops import OsFileOps
from storage.record import FrameFault, RecordType, find_valid_frame, frame, frame_object, read_frame

JOURNAL_FORMAT = "vaultd-raft-journal"
META_FORMAT = "vaultd-raft-meta"
FORMAT_VERSION = 1
# Bytes of one entry's command. The rest of a record payload is the msgpack array with nonce, index and term.
ENTRY_COMMAND_BYTES_MAX = limits.record_payload_bytes_max - 64
# Largest Raft index or term we store (msgpack uint64).
NUMBER_MAX = 2**64 - 1

Entry = tuple[bytes, int, int]


class JournalError(Exception):
    """Base of the journal's errors."""


class JournalCorrupt(JournalError):
    """A journal or meta file is damaged in a way a crash cannot explain."""


class JournalFailed(JournalError):
    """An earlier write or sync failed, or the journal was closed; reopen it to recover."""


def _check_number(name: str, value: object) -> int:
    if type(value) is not int or not 0 <= value <= NUMBER_MAX:
        raise ValueError(f"{name} must be an int in [0, 2**64), got {value!r}")
    return value


def _replace_file(fileops, path: str, data: bytes, keep_open: bool) -> int | None:
    """Atomically make `data` the durable content of `path`: tmp, fsync, rename, directory fsync.

    Returns the open descriptor (positioned at the end of `data`) when `keep_open`.
    """
    tmp = path + ".tmp"
    if fileops.exists(tmp):
        fileops.unlink(tmp)
    fd = fileops.open_new(tmp)
    try:
        fileops.write(fd, data)
        fileops.fsync(fd)
        fileops.rename(tmp, path)
        fileops.fsync_dir(os.path.dirname(path) or ".")
    except BaseException:
        fileops.close(fd)
        raise
    if keep_open:
        return fd
    fileops.close(fd)
    return None


class RaftMeta:
    """Current term and voted-for, persisted atomically on every change and read back on open."""

    def __init__(self, path: str, fileops=None) -> None:
        self._path = path
        self._fileops = fileops if fileops is not None else OsFileOps()
        self._term = 0
        self._voted_for: str | None = None
        self._load()

    @property
    def term(self) -> int:
        return self._term

    @property
    def voted_for(self) -> str | None:
        return self._voted_for

    def _load(self) -> None:
        fileops = self._fileops
        if fileops.exists(self._path + ".tmp"):
            fileops.unlink(self._path + ".tmp")
        if not fileops.exists(self._path):
            return
        data = fileops.read_file(self._path)
        found = read_frame(data, 0)
        if isinstance(found, FrameFault) or found[0] != RecordType.RAFT_META or found[2] != len(data):
            reason = found.value if isinstance(found, FrameFault) else "unexpected record or trailing bytes"
            raise JournalCorrupt(f"{self._path}: {reason} (the meta file is replaced atomically)")
        try:
            meta = msgpack.unpackb(data[found[1] : found[2]], raw=False)
            if meta["format"] != META_FORMAT or meta["version"] != FORMAT_VERSION:
                raise ValueError(f"format {meta['format']!r} version {meta['version']!r}")
            term, voted_for = _check_number("term", meta["term"]), meta["voted_for"]
            if voted_for is not None and not isinstance(voted_for, str):
                raise ValueError("voted_for is not a string")
        except (ValueError, KeyError, TypeError, msgpack.UnpackException) as error:
            raise JournalCorrupt(f"{self._path}: bad meta record: {error}") from None
        self._term, self._voted_for = term, voted_for

    def set(self, term: int, voted_for: str | None) -> None:
        """Persist (term, voted_for); durable when this returns. On an error the old values stay in memory."""
        _check_number("term", term)
        if voted_for is not None and not isinstance(voted_for, str):
            raise TypeError(f"voted_for must be a node id string or None, got {voted_for!r}")
        if (term, voted_for) == (self._term, self._voted_for):
            return
        record = frame_object(
            RecordType.RAFT_META,
            {"format": META_FORMAT, "version": FORMAT_VERSION, "term": term, "voted_for": voted_for},
        )
        _replace_file(self._fileops, self._path, record, keep_open=False)
        self._term, self._voted_for = term, voted_for


class DurableJournal:
    """pysyncobj's journal interface (add, clear, deleteEntriesFrom/To, [], len, term/vote, commit index)."""

    def __init__(self, path: str, fileops=None) -> None:
        self._path = path
        self._fileops = fileops if fileops is not None else OsFileOps()
        self._fd: int | None = None
        self._failure: str | None = None
        self._entries: list[Entry] = []
        self._durable = 0  # self._entries[:self._durable] are in the file
        self._pending: list[bytes] = []  # framed records of self._entries[self._durable:]
        self._nonce = 0
        self._commit_index = 1
        self._meta = RaftMeta(path + ".meta", self._fileops)
        self._rewrite(self._recover())

    # --- recovery and rewriting ---------------------------------------------------------------------------

    def _recover(self) -> list[Entry]:
        if not self._fileops.exists(self._path):
            return []
        data = self._fileops.read_file(self._path)
        found = read_frame(data, 0)
        if isinstance(found, FrameFault) or found[0] != RecordType.SEGMENT_HEADER:
            raise JournalCorrupt(f"{self._path}: no valid header (the file is created atomically)")
        try:
            header = msgpack.unpackb(data[found[1] : found[2]], raw=False)
            if header["format"] != JOURNAL_FORMAT or header["version"] != FORMAT_VERSION:
                raise ValueError(f"format {header['format']!r} version {header['version']!r}")
            nonce = _check_number("nonce", header["nonce"])
        except (ValueError, KeyError, TypeError, msgpack.UnpackException) as error:
            raise JournalCorrupt(f"{self._path}: bad header: {error}") from None
        entries = []
        offset = found[2]
        while offset < len(data):
            found = read_frame(data, offset)
            entry = None if isinstance(found, FrameFault) else _decode_entry(data, found, nonce)
            if entry is None:
                later = _next_entry_offset(data, offset, nonce)
                if later is not None:
                    reason = found.value if isinstance(found, FrameFault) else "record is not an entry of this file"
                    raise JournalCorrupt(
                        f"{self._path}: {reason} at offset {offset} (after {len(entries)} entries), "
                        f"but a valid entry follows at offset {later}: mid-file corruption, not a torn tail"
                    )
                break  # a torn tail: drop it
            entries.append(entry)
            offset = found[2]
        return entries

    def _rewrite(self, entries: list[Entry]) -> None:
        """Make `entries` the whole durable log (atomic), and keep the new file open for appends."""
        nonce = int.from_bytes(os.urandom(8), "little") | 1 << 63  # always 9 msgpack bytes: fixed record sizes
        header = frame_object(
            RecordType.SEGMENT_HEADER, {"format": JOURNAL_FORMAT, "version": FORMAT_VERSION, "nonce": nonce}
        )
        data = b"".join([header, *(_frame_entry(nonce, entry) for entry in entries)])
        try:
            fd = _replace_file(self._fileops, self._path, data, keep_open=True)
        except BaseException as error:
            self._fail(f"rewrite failed: {error!r}")
            raise
        if self._fd is not None:
            self._fileops.close(self._fd)
        self._fd, self._nonce = fd, nonce
        self._entries = list(entries)
        self._durable = len(entries)
        self._pending = []

    def _fail(self, reason: str) -> None:
        self._failure = reason
        if self._fd is not None:
            self._fileops.close(self._fd)
            self._fd = None

    def _check(self) -> None:
        if self._failure is not None:
            raise JournalFailed(f"{self._path}: {self._failure}; reopen the journal")

    # --- durability ---------------------------------------------------------------------------------------

    def flush(self) -> None:
        """Make every added entry durable: one write and one fsync, none when nothing is pending."""
        self._check()
        if not self._pending:
            return
        try:
            self._fileops.write(self._fd, b"".join(self._pending))
            self._fileops.fsync(self._fd)
        except BaseException as error:
            self._fail(f"flush failed: {error!r}")
            raise
        self._durable = len(self._entries)
        self._pending = []

    @property
    def durable_count(self) -> int:
        """How many leading entries are known durable."""
        return self._durable

    @property
    def pending_count(self) -> int:
        """Entries added since the last flush (or durable rewrite)."""
        return len(self._entries) - self._durable

    def close(self) -> None:
        """Flush, then close the file. Further calls raise JournalFailed."""
        if self._failure is None:
            try:
                self.flush()
            finally:
                self._fail("closed")

    # --- pysyncobj's journal interface --------------------------------------------------------------------

    def add(self, command: bytes, idx: int, term: int) -> None:
        self._check()
        if not isinstance(command, (bytes, bytearray, memoryview)):
            raise TypeError(f"command must be bytes, got {type(command).__name__}")
        command = bytes(command)
        if len(command) > ENTRY_COMMAND_BYTES_MAX:
            raise ValueError(f"command of {len(command)} bytes is over {ENTRY_COMMAND_BYTES_MAX}")
        entry = (command, _check_number("idx", idx), _check_number("term", term))
        self._pending.append(_frame_entry(self._nonce, entry))
        self._entries.append(entry)

    def clear(self) -> None:
        self.deleteEntriesFrom(0)

    def deleteEntriesFrom(self, entryFrom: int) -> None:
        """Drop entries[entryFrom:] (list semantics). Durable on return."""
        self._check()
        start = slice(entryFrom, None).indices(len(self._entries))[0]
        if start >= len(self._entries):
            return
        if start >= self._durable:
            del self._pending[start - self._durable :]
            del self._entries[start:]
            return
        self._rewrite(self._entries[:start])

    def deleteEntriesTo(self, entryTo: int) -> None:
        """Drop entries[:entryTo] (list semantics), for log compaction. Durable on return, with any pending."""
        self._check()
        stop = slice(None, entryTo).indices(len(self._entries))[1]
        if stop == 0:
            return
        self._rewrite(self._entries[stop:])

    def __getitem__(self, item):
        return self._entries[item]

    def __len__(self) -> int:
        return len(self._entries)

    def _destroy(self) -> None:
        self.close()

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:
        self._commit_index = raftCommitIndex

    def getRaftCommitIndex(self) -> int:
        return self._commit_index

    def setCurrentTerm(self, term: int, votedForNodeId: str | None) -> None:
        """Persist term and vote atomically before returning (before any vote or message can leave)."""
        self._check()
        self._meta.set(term, votedForNodeId)

    def getCurrentTerm(self) -> int:
        return self._meta.term

    def getVotedForNodeId(self) -> str | None:
        return self._meta.voted_for

    def onOneSecondTimer(self) -> None:
        pass


def _frame_entry(nonce: int, entry: Entry) -> bytes:
    command, idx, term = entry
    return frame(RecordType.ENTRY, msgpack.packb([nonce, idx, term, command], use_bin_type=True))


def _decode_entry(data: bytes, found: tuple[int, int, int], nonce: int) -> Entry | None:
    """The entry in a checksummed record, or None when it is not an ENTRY of the file with `nonce`."""
    record_type, start, end = found
    if record_type != RecordType.ENTRY:
        return None
    try:
        fields = msgpack.unpackb(data[start:end], raw=False)
    except (ValueError, msgpack.UnpackException):
        return None
    if not (isinstance(fields, list) and len(fields) == 4 and fields[0] == nonce):
        return None
    _, idx, term, command = fields
    if type(idx) is not int or type(term) is not int or not isinstance(command, bytes):
        return None
    return command, idx, term


def _next_entry_offset(data: bytes, offset: int, nonce: int) -> int | None:
    """The offset of the first valid entry of this file after `offset`, or None."""
    position = offset
    while (position := find_valid_frame(data, position)) is not None:
        found = read_frame(data, position)
        if _decode_entry(data, found, nonce) is not None:
            return position
    return None
