"""Snapshot streams: export the live state as one verifiable stream, and install one atomically.

Stream format (framed records, `record.py`):

    SNAPSHOT_HEADER   {v: 1, index, term, count}
    SNAPSHOT_CHUNK    [[key, value], ...]      keys strictly increasing across the whole stream
    ...
    SNAPSHOT_TRAILER  {count, sha256}          sha256 over every byte before the trailer

Values are barrier ciphertext, so the stream is sealed. Install writes a whole new generation beside the
live one, verifies the trailer, and only then switches CURRENT: a truncated or corrupt stream raises
SnapshotError and leaves the old state live.
"""

import hashlib
import os
import zlib
from collections.abc import Iterable
from typing import BinaryIO

import msgpack

from . import limits
from .errors import SnapshotError
from .generation import (
    generation_name,
    open_current,
    remove_other_generations,
    write_atomically,
    write_current,
)
from .record import FRAME_HEADER, RecordType, encode_entry, frame, frame_header_bytes, frame_object
from .segment import (
    KIND_SNAPSHOT,
    SegmentHeader,
    SegmentScan,
    SegmentWriter,
    encode_hint,
    hint_name,
    pack_location,
    value_crc_bytes,
)

snapshot_format_version = 1


def write_stream(
    fileobj: BinaryIO, index: int, term: int, count: int, items: Iterable[tuple[str, bytes]]
) -> int:
    """Write a snapshot of `count` (key, value) pairs given in key order. Returns the count written."""
    hasher = hashlib.sha256()

    def emit(data: bytes) -> None:
        hasher.update(data)
        fileobj.write(data)

    emit(frame_object(RecordType.SNAPSHOT_HEADER, {"v": snapshot_format_version, "index": index,
                                                   "term": term, "count": count}))
    chunk, chunk_bytes, written = [], 0, 0
    for key, value in items:
        chunk.append((key, value))
        chunk_bytes += len(key) + len(value)
        written += 1
        if chunk_bytes >= limits.snapshot_read_bytes:
            emit(frame_object(RecordType.SNAPSHOT_CHUNK, chunk))
            chunk, chunk_bytes = [], 0
    if chunk:
        emit(frame_object(RecordType.SNAPSHOT_CHUNK, chunk))
    assert written == count, (written, count)
    fileobj.write(frame_object(RecordType.SNAPSHOT_TRAILER, {"count": written, "sha256": hasher.digest()}))
    return written


class StreamReader:
    """Reads and verifies a snapshot stream record by record; every defect is a SnapshotError."""

    def __init__(self, fileobj: BinaryIO):
        self.fileobj = fileobj
        self.hasher = hashlib.sha256()
        self.offset = 0
        self.count = 0
        self.last_key: str | None = None
        header_type, header = self._next()
        if header_type != RecordType.SNAPSHOT_HEADER or not isinstance(header, dict):
            raise SnapshotError("the stream does not start with a snapshot header")
        if header.get("v") != snapshot_format_version:
            raise SnapshotError(f"unknown snapshot format version {header.get('v')!r}")
        self.index, self.term = header["index"], header["term"]

    def chunks(self) -> Iterable[list[tuple[str, bytes]]]:
        """Each chunk of pairs, checked; ends after a verified trailer and the end of the stream."""
        while True:
            record_type, payload = self._next()
            if record_type == RecordType.SNAPSHOT_TRAILER:
                self._check_trailer(payload)
                return
            if record_type != RecordType.SNAPSHOT_CHUNK or not isinstance(payload, list):
                raise SnapshotError(f"unexpected record type {record_type} at offset {self.offset}")
            yield [self._check_pair(pair) for pair in payload]

    def _check_pair(self, pair: object) -> tuple[str, bytes]:
        if not isinstance(pair, list) or len(pair) != 2:
            raise SnapshotError(f"a malformed pair near offset {self.offset}")
        key, value = pair
        if not isinstance(key, str) or not isinstance(value, bytes):
            raise SnapshotError(f"a pair of the wrong types near offset {self.offset}")
        if len(key.encode()) > limits.key_bytes_max or len(value) > limits.value_bytes_max:
            raise SnapshotError(f"key {key!r} or its value is over the limits")
        if self.last_key is not None and key <= self.last_key:
            raise SnapshotError(f"keys out of order at {key!r}")
        self.last_key = key
        self.count += 1
        return key, value

    def _check_trailer(self, trailer: object) -> None:
        if not isinstance(trailer, dict) or trailer.get("count") != self.count:
            raise SnapshotError(f"the trailer's count does not match the {self.count} records read")
        if trailer.get("sha256") != self.hasher.digest():
            raise SnapshotError("the stream fails its SHA-256")
        if self.fileobj.read(1):
            raise SnapshotError("data follows the trailer")

    def _next(self) -> tuple[int, object]:
        header = self._read_exact(frame_header_bytes)
        crc, length, record_type = FRAME_HEADER.unpack(header)
        if length > limits.record_payload_bytes_max:
            raise SnapshotError(f"record length {length} over the limit at offset {self.offset}")
        payload = self._read_exact(length)
        if zlib.crc32(payload, zlib.crc32(header[4:])) != crc:
            raise SnapshotError(f"record checksum mismatch at offset {self.offset}")
        if record_type != RecordType.SNAPSHOT_TRAILER:
            self.hasher.update(header)
            self.hasher.update(payload)
        self.offset += frame_header_bytes + length
        try:
            return record_type, msgpack.unpackb(payload, raw=False)
        except (ValueError, msgpack.UnpackException) as error:
            raise SnapshotError(f"undecodable record at offset {self.offset}: {error}") from None

    def _read_exact(self, size: int) -> bytes:
        data = self.fileobj.read(size)
        if len(data) != size:
            raise SnapshotError(f"the stream is truncated at offset {self.offset + len(data)}")
        return data


def install(fileops, directory: str, fileobj: BinaryIO, segment_bytes_max: int) -> None:
    """Build generation N+1 from the stream, verify it, switch CURRENT, drop generation N.

    The caller holds the data dir's LOCK. Until CURRENT is switched, the old generation is the live one.
    """
    number = open_current(fileops, directory) + 1
    final = os.path.join(directory, generation_name(number))
    temporary = final + ".tmp"
    if fileops.exists(temporary):
        fileops.remove_tree(temporary)
    fileops.mkdir(temporary)
    try:
        _write_generation(fileops, temporary, StreamReader(fileobj), segment_bytes_max)
        fileops.fsync_dir(temporary)
        fileops.rename(temporary, final)
        fileops.fsync_dir(directory)
    except BaseException:
        if fileops.exists(temporary):
            fileops.remove_tree(temporary)
        raise
    write_current(fileops, directory, number)
    remove_other_generations(fileops, directory, keep=number)


def _write_generation(fileops, directory: str, reader: StreamReader, segment_bytes_max: int) -> None:
    writer, entries, segment_id = None, [], 0
    for chunk in reader.chunks():
        if writer is None or writer.size >= segment_bytes_max:
            if writer is not None:
                _seal(fileops, directory, writer, entries, reader)
            segment_id += 1
            header = SegmentHeader(segment_id, KIND_SNAPSHOT, reader.index, reader.term)
            writer, entries = SegmentWriter.create(fileops, directory, header), []
        _append_chunk(writer, entries, reader.index, reader.term, chunk)
    if writer is None:
        writer = SegmentWriter.create(
            fileops, directory, SegmentHeader(1, KIND_SNAPSHOT, reader.index, reader.term)
        )
    _seal(fileops, directory, writer, entries, reader)


def _append_chunk(writer: SegmentWriter, entries: list, index: int, term: int, chunk: list) -> None:
    ops = [("put", key, value) for key, value in chunk]
    payload = encode_entry(index, term, ops)
    offset = writer.append(frame(RecordType.ENTRY, payload))
    value_offset = offset + frame_header_bytes + len(payload) - sum(len(v) + value_crc_bytes for _, v in chunk)
    for key, value in chunk:
        entries.append((key, index, pack_location(writer.segment_id, value_offset, len(value))))
        value_offset += len(value) + value_crc_bytes


def _seal(fileops, directory: str, writer: SegmentWriter, entries: list, reader: StreamReader) -> None:
    writer.sync()
    writer.close()
    header = SegmentHeader(writer.segment_id, KIND_SNAPSHOT, reader.index, reader.term)
    scan = SegmentScan(header, entries, reader.index, reader.term, writer.size, None, writer.crc)
    write_atomically(fileops, directory, hint_name(writer.segment_id), encode_hint(scan, writer.size))

