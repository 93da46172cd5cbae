"""Record framing and the payload codecs. Pure functions; no I/O.

Every file of the engine (segments, hint files) and the snapshot stream is a sequence of framed records:

    u32 crc32    zlib.crc32 over (len ‖ type ‖ payload), little-endian
    u32 len      payload length, at most limits.record_payload_bytes_max
    u8  type     RecordType
    payload      msgpack

A zero-filled tail (len == 0 and type == 0, e.g. preallocated space) reads as the end of the file.

ENTRY payload, one record per Raft entry, so one entry is atomic:

    [raft_index, raft_term, ops, blob]
    ops  = [[2, key, value_length] | [1, key], ...]    2 = put, 1 = delete (Vault's op types)
    blob = value ‖ crc32(value) (u32 LE) for each put, in op order, as one msgpack bin at the end

`blob` is the last thing in the payload, so the file offset of every value follows from the record's offset
and the lengths alone, and a `get` reads the value and its own CRC with one `pread`.
"""

import enum
import re
import struct
import zlib

import msgpack

from . import limits

FRAME_HEADER = struct.Struct("<IIB")
LENGTH_AND_TYPE = struct.Struct("<IB")
VALUE_CRC = struct.Struct("<I")
frame_header_bytes = FRAME_HEADER.size
value_crc_bytes = VALUE_CRC.size

OP_DELETE = 1
OP_PUT = 2


class RecordType(enum.IntEnum):
    SEGMENT_HEADER = 1
    ENTRY = 2
    RAFT_META = 3
    SNAPSHOT_HEADER = 4
    SNAPSHOT_TRAILER = 5
    HINT_HEADER = 6
    HINT_CHUNK = 7
    HINT_TRAILER = 8
    SNAPSHOT_CHUNK = 9


def frame(record_type: RecordType, payload: bytes) -> bytes:
    assert len(payload) <= limits.record_payload_bytes_max
    length_and_type = LENGTH_AND_TYPE.pack(len(payload), record_type)
    crc = zlib.crc32(payload, zlib.crc32(length_and_type))
    return VALUE_CRC.pack(crc) + length_and_type + payload


def frame_object(record_type: RecordType, value: object) -> bytes:
    return frame(record_type, msgpack.packb(value, use_bin_type=True))


class FrameFault(enum.Enum):
    """Why scanning stopped before the end of a buffer."""

    SHORT = "record runs past the end of the file"
    ZERO_TAIL = "zero-filled tail"
    BAD_LENGTH = "record length over the limit"
    BAD_TYPE = "unknown record type"
    BAD_CRC = "record checksum mismatch"


def read_frame(buffer: bytes, offset: int) -> tuple[int, int, int] | FrameFault:
    """Check the record at `offset`: (type, payload_start, end) if it is whole and valid, else the fault."""
    if offset + frame_header_bytes > len(buffer):
        return FrameFault.SHORT
    crc, length, record_type = FRAME_HEADER.unpack_from(buffer, offset)
    if length == 0 and record_type == 0:
        return FrameFault.ZERO_TAIL
    if length > limits.record_payload_bytes_max:
        return FrameFault.BAD_LENGTH
    if record_type not in _record_types:
        return FrameFault.BAD_TYPE
    start = offset + frame_header_bytes
    end = start + length
    if end > len(buffer):
        return FrameFault.SHORT
    view = memoryview(buffer)
    if zlib.crc32(view[start:end], zlib.crc32(view[offset + 4 : start])) != crc:
        return FrameFault.BAD_CRC
    return record_type, start, end


_record_types = frozenset(int(t) for t in RecordType)


def find_valid_frame(buffer: bytes, offset: int) -> int | None:
    """The offset of the first whole, valid record after `offset`, or None.

    Used after a bad record in the newest segment: a torn tail has nothing valid after it, mid-file corruption
    does. A regular expression finds the offsets whose length and type bytes are plausible, so a long tail costs
    little; only those are checksummed.
    """
    for match in _plausible_header.finditer(buffer, offset + 1):
        if isinstance(read_frame(buffer, match.start()), tuple):
            return match.start()
    return None


# crc (any 4 bytes), a length below 32 MiB (high byte 0 or 1), a known type.
_plausible_header = re.compile(
    b"(?s)(?=.{7}[\\x00\\x01][" + bytes(sorted(_record_types)) + b"])"
)


def encode_entry(raft_index: int, raft_term: int, ops: list[tuple[str, str, bytes | None]]) -> bytes:
    """The ENTRY payload for one Raft entry. `ops` must already be validated.

    The values start at `len(payload) - blob_bytes(ops)` inside the payload.
    """
    encoded_ops = []
    blob_parts = []
    for op, key, value in ops:
        if op == "put":
            encoded_ops.append((OP_PUT, key, len(value)))
            blob_parts.append(value)
            blob_parts.append(VALUE_CRC.pack(zlib.crc32(value)))
        else:
            encoded_ops.append((OP_DELETE, key))
    return msgpack.packb((raft_index, raft_term, encoded_ops, b"".join(blob_parts)), use_bin_type=True)


def blob_bytes(ops: list[tuple[str, str, bytes | None]]) -> int:
    return sum(len(value) + value_crc_bytes for op, _, value in ops if op == "put")


def decode_entry(payload: bytes) -> tuple[int, int, list, int]:
    """(raft_index, raft_term, ops, blob_start): blob_start is where the values begin inside `payload`."""
    raft_index, raft_term, ops, blob = msgpack.unpackb(payload, use_list=True, raw=False)
    return raft_index, raft_term, ops, len(payload) - len(blob)


def check_value(raw: bytes, length: int) -> bytes | None:
    """The value from `raw` = value ‖ crc32, or None when the CRC does not match."""
    value = raw[:length]
    if len(raw) != length + value_crc_bytes or VALUE_CRC.unpack_from(raw, length)[0] != zlib.crc32(value):
        return None
    return value
