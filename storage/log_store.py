"""LogStore: the sealed, log-structured key-value store every node's Raft state machine applies into.

Values are opaque bytes (barrier ciphertext); the store never sees a key of the barrier and works while the
node is sealed. One `apply` is one Raft entry: one record, one `write()`, and with `sync="batch"` one fsync,
so it is atomic and durable when it returns. The design is `shared/reference/storage.md` §6.

Threads: `apply` (the Raft thread), `get`/`list` (the event loop) and the maintenance thread (hints and
compaction) may run at once. Two locks:
- `_write_lock` serialises writers: apply, roll, compaction commit, restore, close;
- `_state_lock` guards the index and the read fds; it is held only for memory updates and one `pread`.
"""

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import BinaryIO

from . import compaction, limits, snapshot
from .batch import Op, validate_ops
from .errors import (
    CorruptionError,
    IndexNotMonotonic,
    InvalidBatch,
    StorageError,
    StoreClosed,
    StoreFailed,
)
from .fileops import OsFileOps
from .generation import LOCK, generation_name, open_current, write_atomically
from .record import RecordType, blob_bytes, check_value, encode_entry, frame, frame_header_bytes
from .recovery import SegmentInfo, load_generation, read_segment_checked
from .segment import (
    KIND_ACTIVE,
    SegmentHeader,
    SegmentWriter,
    encode_hint,
    hint_name,
    pack_location,
    segment_name,
    unpack_location,
    value_crc_bytes,
)

logger = logging.getLogger(__name__)

sync_modes = ("batch", "none")


class LogStore:
    """Open with `LogStore.open(dir)`; see the module docstring."""

    def __init__(self, directory: str, fileops: OsFileOps, lock_handle: int, sync: str, options: dict):
        self._directory = directory
        self._fileops = fileops
        self._lock_handle = lock_handle
        self._sync = sync
        self.segment_bytes_max = options["segment_bytes_max"]
        self.compaction_rate_bytes_per_second = options["compaction_rate_bytes_per_second"]
        self._monotonic = options["monotonic"]
        self._write_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._maintenance_lock = threading.Lock()
        self._stop = threading.Event()
        self._maintenance_thread: threading.Thread | None = None
        self._closed = False
        self._failure: str | None = None  # set once a write or fsync failed; never cleared
        self._readers: dict[int, int] = {}

    @classmethod
    def open(
        cls,
        directory: str,
        sync: str = "batch",
        *,
        fileops: OsFileOps | None = None,
        background: bool = True,
        repair: bool = False,
        segment_bytes_max: int = limits.segment_bytes_max,
        compaction_rate_bytes_per_second: int = limits.compaction_rate_bytes_per_second,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> "LogStore":
        """Open (creating if needed) and recover the store in `directory`.

        `sync="batch"` fsyncs every apply; `"none"` leaves it to the page cache (kill -9 safe, not power-loss
        safe). `background` starts the maintenance thread; without it, call `maintain()` yourself.
        """
        if sync not in sync_modes:
            raise ValueError(f"sync must be one of {sync_modes}, not {sync!r}")
        fileops = fileops or OsFileOps()
        _make_data_dir(fileops, directory)
        lock_handle = fileops.lock(os.path.join(directory, LOCK))
        options = {
            "segment_bytes_max": segment_bytes_max,
            "compaction_rate_bytes_per_second": compaction_rate_bytes_per_second,
            "monotonic": monotonic,
        }
        store = cls(directory, fileops, lock_handle, sync, options)
        try:
            store._load(repair)
        except BaseException:
            store._close_files()
            raise
        if background:
            store._maintenance_thread = threading.Thread(
                target=store._maintenance_loop, name=f"logstore-maintenance {directory}", daemon=True
            )
            store._maintenance_thread.start()
        return store

    @classmethod
    def install_snapshot(cls, directory: str, fileobj: BinaryIO, *, fileops: OsFileOps | None = None) -> None:
        """Replace the store in `directory` (which no one may have open) by the snapshot stream."""
        fileops = fileops or OsFileOps()
        _make_data_dir(fileops, directory)
        lock_handle = fileops.lock(os.path.join(directory, LOCK))
        try:
            snapshot.install(fileops, directory, fileobj, limits.segment_bytes_max)
        finally:
            fileops.unlock(lock_handle)

    def _load(self, repair: bool = False) -> None:
        """Load the current generation. Readers see the old generation or the new one, never a mix: a `get`
        during `restore` found an index entry whose segment's reader was already gone (jepsen_lite, KeyError)."""
        generation = open_current(self._fileops, self._directory)
        generation_dir = os.path.join(self._directory, generation_name(generation))
        loaded = load_generation(self._fileops, generation_dir, repair)
        readers = {segment_id: self._fileops.open_read(os.path.join(generation_dir, segment_name(segment_id)))
                   for segment_id in loaded.segments}
        with self._state_lock:
            old_readers, self._readers = self._readers, readers
            self.generation, self.generation_dir = generation, generation_dir
            self._index = loaded.index
            self._segments: dict[int, SegmentInfo] = loaded.segments
            self._applied_index = loaded.applied_index  # invariant: every entry up to here is applied
            self._applied_term = loaded.applied_term
            self._next_segment_id = loaded.next_segment_id
        for fd in old_readers.values():
            self._fileops.close(fd)
        self._active: SegmentWriter | None = None
        self._start_active_segment()

    # --- writes -------------------------------------------------------------------------------------------

    def apply(self, index: int, ops: Iterable[Op], term: int = 0) -> None:
        """Apply one Raft entry atomically; durable on return with `sync="batch"`.

        A malformed batch raises InvalidBatch and changes nothing. A failed write or fsync raises
        StoreFailed, and every later write does too: an fsync is never retried.
        """
        checked = validate_ops(ops)
        payload = encode_entry(index, term, checked)
        if len(payload) > limits.record_payload_bytes_max:
            raise InvalidBatch(f"the batch encodes to {len(payload)} bytes, over the record limit")
        data = frame(RecordType.ENTRY, payload)
        blob_offset = frame_header_bytes + len(payload) - blob_bytes(checked)
        with self._write_lock:
            self._check_writable()
            if index <= self._applied_index:
                raise IndexNotMonotonic(index, self._applied_index)
            if self._active.size >= self.segment_bytes_max:
                self._roll()
            active = self._active
            offset = active.size
            try:
                active.append(data)
                if self._sync == "batch":
                    active.sync()
            except OSError as error:
                self._fail(error, offset)
            with self._state_lock:
                self._publish(index, term, checked, active.segment_id, offset + blob_offset)

    def _publish(self, index: int, term: int, ops: list[Op], segment_id: int, value_offset: int) -> None:
        for op, key, value in ops:
            if op == "put":
                self._index.put(key, pack_location(segment_id, value_offset, len(value)))
                value_offset += len(value) + value_crc_bytes
            else:
                self._index.delete(key, index, segment_id)
        self._applied_index = index
        self._applied_term = term

    def _fail(self, error: OSError, offset: int) -> None:
        """Refuse every later write; cut the partial record off if the disk still lets us."""
        self._failure = f"{os.strerror(error.errno) if error.errno else error} on {self._active.path}"
        logger.error("storage failed: %s; refusing writes until reopened", self._failure)
        with contextlib.suppress(OSError):
            self._active.truncate(offset)
        raise StoreFailed(self._failure) from error

    def _check_writable(self) -> None:
        if self._closed:
            raise StoreClosed("the store is closed")
        if self._failure is not None:
            raise StoreFailed(f"the store refuses writes after an earlier failure: {self._failure}")

    def _roll(self) -> None:
        """Seal the active segment (fsync it) and start a new one. The caller holds the write lock."""
        old = self._active
        try:
            old.sync()
        except OSError as error:
            self._fail(error, old.size)
        old.close()
        self._active = None
        info = SegmentInfo(KIND_ACTIVE, old.size, self._applied_index, self._applied_term, hinted=False)
        with self._state_lock:
            self._segments[old.segment_id] = info
        self._start_active_segment()

    def _start_active_segment(self) -> None:
        header = SegmentHeader(self.allocate_segment_id(), KIND_ACTIVE, self._applied_index, self._applied_term)
        try:
            writer = SegmentWriter.create(self._fileops, self.generation_dir, header)
            reader = self._fileops.open_read(writer.path)
        except OSError as error:
            self._failure = f"cannot start a segment: {error}"
            raise StoreFailed(self._failure) from error
        with self._state_lock:
            self._readers[writer.segment_id] = reader
        self._active = writer

    def allocate_segment_id(self) -> int:
        segment_id = self._next_segment_id
        self._next_segment_id += 1
        return segment_id

    # --- reads --------------------------------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        """The value of `key`, or None. Raises CorruptionError rather than return bytes that fail their CRC."""
        with self._state_lock:
            if self._closed:
                raise StoreClosed("the store is closed")
            location = self._index.locations.get(key)
            if location is None:
                return None
            segment_id, offset, length = unpack_location(location)
            raw = self._fileops.pread(self._readers[segment_id], length + value_crc_bytes, offset)
        return self._checked(key, location, raw)

    def _checked(self, key: str, location: int, raw: bytes) -> bytes:
        """The value in `raw` (value ‖ crc32), or CorruptionError naming the segment and offset."""
        segment_id, offset, length = unpack_location(location)
        value = check_value(raw, length)
        if value is None:
            path = os.path.join(self.generation_dir, segment_name(segment_id))
            raise CorruptionError(path, offset, f"value of {key!r} fails its checksum")
        return value

    def list(self, prefix: str) -> list[str]:
        """The immediate children of `prefix` in key order; folders end in '/' (Vault's physical LIST)."""
        with self._state_lock:
            if self._closed:
                raise StoreClosed("the store is closed")
            return self._index.list(prefix)

    @property
    def applied_index(self) -> int:
        return self._applied_index

    @property
    def applied_term(self) -> int:
        return self._applied_term

    def __len__(self) -> int:
        return len(self._index.locations)

    def disk_bytes(self) -> int:
        """Bytes of segments and hints in the current generation."""
        directory, fileops = self.generation_dir, self._fileops
        return sum(fileops.path_size(os.path.join(directory, name)) for name in fileops.listdir(directory))

    # --- snapshots ----------------------------------------------------------------------------------------

    def export_snapshot(self, fileobj: BinaryIO) -> int:
        """Stream every live key in key order, with a trailer of count and SHA-256. Returns the count.

        Takes a consistent view under the lock, then streams without it: applies go on meanwhile.
        """
        with self._state_lock:
            if self._closed:
                raise StoreClosed("the store is closed")
            locations = self._index.locations
            items = [(key, locations[key]) for key in self._index.keys]
            fds = {segment_id: self._fileops.dup(fd) for segment_id, fd in self._readers.items()}
            index, term = self._applied_index, self._applied_term
        try:
            values = (self._read_pinned(fds, key, location) for key, location in items)
            return snapshot.write_stream(fileobj, index, term, len(items), values)
        finally:
            for fd in fds.values():
                self._fileops.close(fd)

    def _read_pinned(self, fds: dict[int, int], key: str, location: int) -> tuple[str, bytes]:
        segment_id, offset, length = unpack_location(location)
        return key, self._checked(key, location, self._fileops.pread(fds[segment_id], length + value_crc_bytes, offset))

    def restore(self, fileobj: BinaryIO) -> None:
        """Replace this open store's contents by a snapshot stream, atomically.

        A truncated or corrupt stream raises SnapshotError and the old state stays live.
        """
        with self._maintenance_lock, self._write_lock:
            self._check_writable()
            snapshot.install(self._fileops, self._directory, fileobj, self.segment_bytes_max)
            self._active.close()  # readers keep serving the old generation until `_load` swaps them
            self._active = None
            try:
                self._load()
            except BaseException as error:
                self._failure = f"reload after snapshot install failed: {error}"
                raise

    # --- maintenance --------------------------------------------------------------------------------------

    def maintain(self) -> None:
        """Write missing hint files, then compact if enough is dead. The background thread calls this."""
        with self._maintenance_lock:
            if self._closed:
                raise StoreClosed("the store is closed")
            self.write_missing_hints()
            job = compaction.plan(self)
            if job is not None:
                compaction.run(self, job)

    def compact(self, include_active: bool = False) -> None:
        """Compact every sealed segment now (dropping tombstones); with `include_active`, roll first."""
        with self._maintenance_lock:
            if include_active:
                with self._write_lock:
                    self._check_writable()
                    self._roll()
            self.write_missing_hints()
            job = compaction.plan(self, force_full=True)
            if job is not None:
                compaction.run(self, job)

    def write_missing_hints(self) -> None:
        with self._state_lock:
            segment_ids = sorted(self._segments)
        for segment_id in segment_ids:
            info = self._segments.get(segment_id)
            if info is None or info.hinted or self._stop.is_set():
                continue
            _, buffer, scan = read_segment_checked(self._fileops, self.generation_dir, segment_id)
            write_atomically(self._fileops, self.generation_dir, hint_name(segment_id), encode_hint(scan, len(buffer)))
            info.hinted = True

    def _maintenance_loop(self) -> None:
        delay = limits.maintenance_interval_seconds
        while not self._stop.wait(delay):
            try:
                self.maintain()
                delay = limits.maintenance_interval_seconds
            except StoreClosed:
                return
            except (StorageError, OSError) as error:
                delay = min(delay * 2, limits.maintenance_backoff_seconds_max)
                logger.error("storage maintenance failed, retrying in %.0f s: %s", delay, error)

    # --- closing ------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop maintenance and release the data dir. Idempotent."""
        self._stop.set()
        if self._maintenance_thread is not None:
            self._maintenance_thread.join()
        with self._maintenance_lock, self._write_lock:
            if self._closed:
                return
            self._write_active_hint()
            self._close_files()

    def _write_active_hint(self) -> None:
        """On a clean close, hint the active segment too, so the next open need not scan it."""
        if self._failure is not None or self._active is None:
            return
        try:
            self._active.sync()
            _, buffer, scan = read_segment_checked(self._fileops, self.generation_dir, self._active.segment_id)
            hint = encode_hint(scan, len(buffer))
            write_atomically(self._fileops, self.generation_dir, hint_name(self._active.segment_id), hint)
        except (OSError, StorageError) as error:
            logger.warning("no hint for the active segment at close (the next open scans it): %s", error)

    def _close_files(self) -> None:
        with self._state_lock:
            self._closed = True
            self._close_segments()
        self._fileops.unlock(self._lock_handle)

    def _close_segments(self) -> None:
        for fd in self._readers.values():
            self._fileops.close(fd)
        self._readers = {}
        active = getattr(self, "_active", None)
        if active is not None:
            active.close()
            self._active = None

    def __enter__(self) -> "LogStore":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _make_data_dir(fileops: OsFileOps, directory: str) -> None:
    """Create the data dir if missing, durably: its entry in the parent is fsynced too."""
    if not fileops.isdir(directory):
        fileops.mkdir(directory)
        fileops.fsync_dir(os.path.dirname(os.path.abspath(directory)))
