"""Opening a generation: clean up after any crash, then load the index from hints or scans.

Steps, in order (each deletion is followed by a directory fsync):
1. remove `*.tmp` files: writes that never committed;
2. settle compaction jobs: a job whose manifest exists committed, so the segments it `replaces` go; a job
   without a manifest whose inputs still exist never committed, so its outputs go (a deleted key can never
   come back from an old input);
3. load each segment in id order from its hint when the hint matches the segment's size and CRC, else by a
   scan that checks every record's CRC;
4. the newest segment that was being appended may end in a torn record: truncate it there, if nothing valid
   follows. Anything else that fails a check raises CorruptionError naming the file and offset.
"""

import dataclasses
import logging
import os
import zlib

from .errors import CorruptionError
from .fileops import OsFileOps
from .index import Index
from .segment import (
    KIND_ACTIVE,
    KIND_COMPACTION,
    SegmentHeader,
    check_tail,
    decode_hint,
    hint_name,
    parse_segment_id,
    read_header,
    scan_segment,
    segment_name,
)

logger = logging.getLogger(__name__)
header_read_bytes = 1024 * 1024
manifest_suffix = ".compaction"


@dataclasses.dataclass
class SegmentInfo:
    """A sealed segment: immutable, readable, a compaction input once enough of it is dead."""

    kind: str
    size: int
    max_index: int
    max_term: int
    hinted: bool


@dataclasses.dataclass
class Loaded:
    index: Index
    segments: dict[int, SegmentInfo]
    applied_index: int
    applied_term: int
    next_segment_id: int


def manifest_name(job: int) -> str:
    return f"{job:012d}{manifest_suffix}"


def load_generation(fileops: OsFileOps, directory: str, repair: bool = False) -> Loaded:
    names = _remove_temporary_files(fileops, directory)
    headers = {}
    for name in names:
        segment_id = parse_segment_id(name)
        if segment_id is not None:
            headers[segment_id] = _read_segment_header(fileops, os.path.join(directory, name))
    next_segment_id = max(headers, default=0) + 1
    _settle_compactions(fileops, directory, names, headers)
    _remove_orphan_hints(fileops, directory, headers)
    newest_active = max((i for i, h in headers.items() if h.kind == KIND_ACTIVE), default=None)
    segments, entries = {}, []
    applied_index = applied_term = 0
    for segment_id in sorted(headers):
        info, columns = _read_segment(fileops, directory, segment_id, segment_id == newest_active, repair)
        segments[segment_id] = info
        entries.append((segment_id, columns))
        if info.max_index >= applied_index:
            applied_index, applied_term = info.max_index, info.max_term
    index = Index()
    # Without compaction outputs, segments hold disjoint, increasing raft indexes: id order is age order and
    # the per-key newest-index bookkeeping (a second 1M-entry dict) can be skipped.
    sequence = {} if _overlapping(entries) else None
    for segment_id, (keys, indexes, locations) in entries:
        index.load(segment_id, keys, indexes, locations, sequence)
    index.finish_load()
    return Loaded(index, segments, applied_index, applied_term, next_segment_id)


def _remove_temporary_files(fileops: OsFileOps, directory: str) -> list[str]:
    names = fileops.listdir(directory)
    temporary = [name for name in names if name.endswith(".tmp")]
    for name in temporary:
        fileops.unlink(os.path.join(directory, name))
    if temporary:
        fileops.fsync_dir(directory)
    return [name for name in names if not name.endswith(".tmp")]


def _read_segment_header(fileops: OsFileOps, path: str) -> SegmentHeader:
    fd = fileops.open_read(path)
    try:
        return read_header(path, fileops.pread(fd, header_read_bytes, 0))
    finally:
        fileops.close(fd)


def _settle_compactions(
    fileops: OsFileOps, directory: str, names: list[str], headers: dict[int, SegmentHeader]
) -> None:
    manifests = {name for name in names if name.endswith(manifest_suffix)}
    doomed = set()
    for segment_id, header in headers.items():
        if header.kind != KIND_COMPACTION:
            continue
        if manifest_name(header.job) in manifests:
            doomed.update(header.replaces)
        elif any(replaced in headers for replaced in header.replaces):
            doomed.add(segment_id)
    for segment_id in sorted(doomed & headers.keys()):
        logger.info("removing segment %s of a settled compaction", segment_name(segment_id))
        fileops.unlink(os.path.join(directory, segment_name(segment_id)))
        del headers[segment_id]
    if doomed:
        fileops.fsync_dir(directory)
    for name in manifests:
        fileops.unlink(os.path.join(directory, name))
    if manifests:
        fileops.fsync_dir(directory)


def _remove_orphan_hints(fileops: OsFileOps, directory: str, headers: dict[int, SegmentHeader]) -> None:
    removed = False
    for name in fileops.listdir(directory):
        stem, _, suffix = name.partition(".")
        if suffix == "hint" and (not stem.isdigit() or int(stem) not in headers):
            fileops.unlink(os.path.join(directory, name))
            removed = True
    if removed:
        fileops.fsync_dir(directory)


def _overlapping(entries: list) -> bool:
    newest = 0
    for _, (_, indexes, _) in entries:
        if indexes:
            if min(indexes) < newest:
                return True
            newest = max(indexes)
    return False


def _read_segment(fileops: OsFileOps, directory: str, segment_id: int, may_truncate: bool, repair: bool):
    """(SegmentInfo, (keys, indexes, locations)) from the hint if it matches the segment, else from a scan."""
    path = os.path.join(directory, segment_name(segment_id))
    buffer = fileops.read_file(path)
    hint_path = os.path.join(directory, hint_name(segment_id))
    hint = decode_hint(fileops.read_file(hint_path)) if fileops.exists(hint_path) else None
    if hint is not None and hint.segment_size == len(buffer) and hint.segment_crc == zlib.crc32(buffer):
        header = read_header(path, buffer)
        info = SegmentInfo(header.kind, len(buffer), hint.max_index, hint.max_term, hinted=True)
        return info, (hint.keys, hint.indexes, hint.locations)
    scan = scan_segment(path, buffer)
    check_tail(path, buffer, scan, may_truncate, repair)
    size = len(buffer)
    if scan.fault is not None:
        logger.warning("%s: %s at offset %d; truncating the torn tail", path, scan.fault.value, scan.good_end)
        _truncate(fileops, path, scan.good_end)
        size = scan.good_end
    columns = tuple(zip(*scan.entries, strict=True)) if scan.entries else ((), (), ())
    return SegmentInfo(scan.header.kind, size, scan.max_index, scan.max_term, hinted=False), columns


def _truncate(fileops: OsFileOps, path: str, size: int) -> None:
    fd = fileops.open_rw(path)
    try:
        fileops.ftruncate(fd, size)
        fileops.fsync(fd)
    finally:
        fileops.close(fd)


def read_segment_checked(fileops: OsFileOps, directory: str, segment_id: int):
    """Read and scan a sealed segment, refusing any fault. Returns (path, buffer, scan)."""
    path = os.path.join(directory, segment_name(segment_id))
    buffer = fileops.read_file(path)
    scan = scan_segment(path, buffer)
    if scan.fault is not None:
        raise CorruptionError(path, scan.good_end, f"{scan.fault.value} in a sealed segment")
    return path, buffer, scan
