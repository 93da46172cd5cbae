"""Segment files and their hint files: naming, creation, scanning and location packing.

A segment is `<id>.seg` in a generation directory: a SEGMENT_HEADER record, then ENTRY records. It is
created as `<id>.seg.tmp`, its header written and fsynced, renamed into place and the directory fsynced, so
a `.seg` file always has a whole header and is never used before it is durable.

A value's location is one int (a tuple costs about 30% more RAM per key):

    location = segment_id << 52 | value_offset << 24 | value_length
"""

import contextlib
import dataclasses
import os
import zlib

import msgpack

from . import limits
from .errors import CorruptionError
from .fileops import OsFileOps
from .record import (
    OP_PUT,
    FrameFault,
    RecordType,
    decode_entry,
    find_valid_frame,
    frame,
    frame_object,
    read_frame,
    value_crc_bytes,
)

segment_format_version = 1
offset_bits = 28
length_bits = 24
assert limits.segment_bytes_max + limits.record_payload_bytes_max < 1 << offset_bits
assert limits.value_bytes_max < 1 << length_bits

KIND_ACTIVE = "active"
KIND_COMPACTION = "compaction"
KIND_SNAPSHOT = "snapshot"


def pack_location(segment_id: int, value_offset: int, value_length: int) -> int:
    return segment_id << 52 | value_offset << length_bits | value_length


def unpack_location(location: int) -> tuple[int, int, int]:
    return (
        location >> 52,
        (location >> length_bits) & ((1 << offset_bits) - 1),
        location & ((1 << length_bits) - 1),
    )


def segment_name(segment_id: int) -> str:
    return f"{segment_id:012d}.seg"


def hint_name(segment_id: int) -> str:
    return f"{segment_id:012d}.hint"


def parse_segment_id(name: str) -> int | None:
    stem, _, suffix = name.partition(".")
    if suffix != "seg" or not stem.isdigit():
        return None
    return int(stem)


@dataclasses.dataclass
class SegmentHeader:
    segment_id: int
    kind: str
    base_index: int
    base_term: int
    replaces: list[int] = dataclasses.field(default_factory=list)
    job: int = 0  # compaction outputs: the id of the job's manifest, which commits them

    def encode(self) -> bytes:
        return frame_object(
            RecordType.SEGMENT_HEADER,
            {
                "v": segment_format_version,
                "segment": self.segment_id,
                "kind": self.kind,
                "base_index": self.base_index,
                "base_term": self.base_term,
                "replaces": self.replaces,
                "job": self.job,
            },
        )

    @classmethod
    def decode(cls, payload: bytes) -> "SegmentHeader":
        fields = msgpack.unpackb(payload, raw=False)
        return cls(
            segment_id=fields["segment"],
            kind=fields["kind"],
            base_index=fields["base_index"],
            base_term=fields["base_term"],
            replaces=list(fields["replaces"]),
            job=fields["job"],
        )


class SegmentWriter:
    """The append end of one segment. Not thread-safe: the store serialises writers."""

    def __init__(self, fileops: OsFileOps, path: str, fd: int, segment_id: int, size: int):
        self.fileops = fileops
        self.path = path
        self.fd = fd
        self.segment_id = segment_id
        self.size = size  # invariant: every byte below size was written by a returned append
        self.crc = 0  # crc32 of the bytes below size, while they were written by this writer

    @classmethod
    def create(
        cls, fileops: OsFileOps, directory: str, header: SegmentHeader, publish: bool = True
    ) -> "SegmentWriter":
        """Create `<id>.seg.tmp` with its header. With `publish`, fsync, rename into place, fsync the dir.

        Without `publish` the writer stays on the temporary name; the caller renames it (compaction, install).
        """
        path = os.path.join(directory, segment_name(header.segment_id))
        temporary = path + ".tmp"
        fd = fileops.open_new(temporary)
        try:
            encoded = header.encode()
            fileops.write(fd, encoded)
            if publish:
                fileops.fsync(fd)
                fileops.rename(temporary, path)
                fileops.fsync_dir(directory)
        except BaseException:
            fileops.close(fd)
            with contextlib.suppress(OSError):
                fileops.unlink(temporary)
            raise
        writer = cls(fileops, path if publish else temporary, fd, header.segment_id, len(encoded))
        writer.crc = zlib.crc32(encoded)
        return writer

    def append(self, data: bytes) -> int:
        """Append `data`; returns the offset it starts at. On error the file may hold a partial write."""
        offset = self.size
        self.fileops.write(self.fd, data)
        self.size += len(data)
        self.crc = zlib.crc32(data, self.crc)
        return offset

    def sync(self) -> None:
        self.fileops.fdatasync(self.fd)

    def truncate(self, size: int) -> None:
        """Cut a failed append off. The running CRC is void afterwards; the writer takes no more data."""
        self.fileops.ftruncate(self.fd, size)
        self.size = size

    def close(self) -> None:
        self.fileops.close(self.fd)


@dataclasses.dataclass
class SegmentScan:
    """What a segment holds, in file order. `entries` are (key, raft_index, location | None for a delete)."""

    header: SegmentHeader
    entries: list[tuple[str, int, int | None]]
    max_index: int
    max_term: int
    good_end: int  # the end of the last whole, valid record
    fault: FrameFault | None  # why the scan stopped before the end of the file, if it did
    crc: int  # crc32 of the whole file as read


def read_header(path: str, buffer: bytes) -> SegmentHeader:
    result = read_frame(buffer, 0)
    if isinstance(result, FrameFault) or result[0] != RecordType.SEGMENT_HEADER:
        reason = result.value if isinstance(result, FrameFault) else "first record is not a segment header"
        raise CorruptionError(path, 0, f"bad segment header: {reason}")
    _, start, end = result
    try:
        return SegmentHeader.decode(buffer[start:end])
    except (ValueError, KeyError, TypeError, msgpack.UnpackException) as error:
        raise CorruptionError(path, 0, f"undecodable segment header: {error}") from None


def scan_segment(path: str, buffer: bytes) -> SegmentScan:
    """Read every record, checking each CRC. Stops at the first bad or short record and reports it."""
    header = read_header(path, buffer)
    segment_shift = header.segment_id << 52
    entries = []
    max_index, max_term = header.base_index, header.base_term
    offset = read_frame(buffer, 0)[2]
    fault = None
    while offset < len(buffer):
        result = read_frame(buffer, offset)
        if isinstance(result, FrameFault):
            fault = result
            break
        record_type, start, end = result
        if record_type != RecordType.ENTRY:
            raise CorruptionError(path, offset, f"unexpected record type {record_type} in a segment")
        try:
            raft_index, raft_term, ops, blob_start = decode_entry(buffer[start:end])
        except (ValueError, TypeError, msgpack.UnpackException) as error:
            raise CorruptionError(path, offset, f"undecodable entry: {error}") from None
        value_offset = start + blob_start
        for op in ops:
            if op[0] == OP_PUT:
                entries.append((op[1], raft_index, segment_shift | value_offset << length_bits | op[2]))
                value_offset += op[2] + value_crc_bytes
            else:
                entries.append((op[1], raft_index, None))
        if raft_index > max_index:
            max_index, max_term = raft_index, raft_term
        offset = end
    return SegmentScan(header, entries, max_index, max_term, offset, fault, zlib.crc32(buffer))


def check_tail(path: str, buffer: bytes, scan: SegmentScan, may_truncate: bool, repair: bool = False) -> None:
    """Raise CorruptionError unless the scan's fault is a torn tail that may be truncated.

    A torn tail has no valid record after it; anything else is mid-file corruption, which is never skipped,
    unless the operator asked for `repair` (truncate at the first bad record; Raft re-supplies the rest).
    """
    if scan.fault is None or repair:
        return
    if not may_truncate:
        raise CorruptionError(path, scan.good_end, f"{scan.fault.value} in a sealed segment")
    following = find_valid_frame(buffer, scan.good_end)
    if following is not None:
        raise CorruptionError(
            path, scan.good_end, f"{scan.fault.value}, and a valid record follows at offset {following}"
        )


def encode_hint(scan: SegmentScan, segment_size: int) -> bytes:
    """A hint file: the segment's entries, chunked so that loading is a few C-level unpacks."""
    parts = [
        frame_object(
            RecordType.HINT_HEADER,
            {
                "segment": scan.header.segment_id,
                "segment_size": segment_size,
                "segment_crc": scan.crc,
                "max_index": scan.max_index,
                "max_term": scan.max_term,
            },
        )
    ]
    step = limits.hint_chunk_entries
    for first in range(0, len(scan.entries), step):
        chunk = scan.entries[first : first + step]
        parts.append(frame(RecordType.HINT_CHUNK, msgpack.packb([list(column) for column in zip(*chunk, strict=True)])))
    parts.append(frame_object(RecordType.HINT_TRAILER, {"count": len(scan.entries)}))
    return b"".join(parts)


@dataclasses.dataclass
class Hint:
    segment_size: int
    segment_crc: int
    max_index: int
    max_term: int
    keys: list[str]
    indexes: list[int]
    locations: list[int | None]


def decode_hint(buffer: bytes) -> Hint | None:
    """The hint, or None when it is damaged in any way (the caller then scans the segment)."""
    try:
        return _decode_hint(buffer)
    except (ValueError, KeyError, TypeError, msgpack.UnpackException):
        return None


def _decode_hint(buffer: bytes) -> Hint | None:
    offset, meta, keys, indexes, locations = 0, None, [], [], []
    while True:
        result = read_frame(buffer, offset)
        if isinstance(result, FrameFault):
            return None
        record_type, start, end = result
        payload = msgpack.unpackb(buffer[start:end], raw=False)
        if record_type == RecordType.HINT_HEADER and meta is None:
            meta = payload
        elif record_type == RecordType.HINT_CHUNK and meta is not None:
            chunk_keys, chunk_indexes, chunk_locations = payload
            keys += chunk_keys
            indexes += chunk_indexes
            locations += chunk_locations
        elif record_type == RecordType.HINT_TRAILER and meta is not None:
            if end != len(buffer) or payload["count"] != len(keys):
                return None
            return Hint(
                meta["segment_size"], meta["segment_crc"], meta["max_index"], meta["max_term"],
                keys, indexes, locations,
            )
        else:
            return None
        offset = end
