"""Compaction: copy the live records of mostly-dead sealed segments forward, then drop the inputs.

A job, crash-safe at every step:
1. scan each input, keep the entries the index still points at (and current tombstones);
2. append them, with their original raft index, to new `<id>.seg.tmp` outputs whose headers name the
   inputs they replace and the job; write their hints; fsync;
3. rename outputs and hints into place, fsync the dir;
4. write the job's manifest (tmp, fsync, rename, fsync the dir): the commit point;
5. repoint the index by compare-and-set (an entry overwritten meanwhile stays where it is);
6. unlink the inputs, fsync the dir; unlink the manifest, fsync the dir.
Open settles a crash between any two steps (`recovery._settle_compactions`).

Tombstones are dropped only when the job takes every sealed segment: then no older record of the key can
remain outside it (records in the active segment are newer than all sealed ones), so it cannot resurrect.
"""

import dataclasses
import logging
import os

from . import limits
from .errors import StorageError
from .generation import write_atomically, write_durably
from .record import RecordType, blob_bytes, encode_entry, frame, frame_header_bytes, frame_object
from .recovery import SegmentInfo, manifest_name, read_segment_checked
from .segment import (
    KIND_COMPACTION,
    SegmentHeader,
    SegmentScan,
    SegmentWriter,
    encode_hint,
    hint_name,
    pack_location,
    segment_name,
    unpack_location,
    value_crc_bytes,
)

logger = logging.getLogger(__name__)
# Consecutive live entries of one raft index are copied as one record, up to these bounds.
_group_ops_max = 256
_group_bytes_max = 1024 * 1024
assert _group_ops_max <= limits.batch_ops_max
assert _group_bytes_max + limits.value_bytes_max < limits.record_payload_bytes_max


class CompactionAborted(StorageError):
    """The store is closing; the job stopped before its commit point and left nothing behind."""


@dataclasses.dataclass
class Job:
    inputs: list[int]
    full: bool  # every sealed segment is an input, so tombstones may go


def plan(store, force_full: bool = False) -> Job | None:
    """The next job: every sealed segment when half the store is dead, else the segments half dead."""
    with store._state_lock:
        sealed = sorted(store._segments)
        live = {segment_id: store._index.live_bytes.get(segment_id, 0) for segment_id in sealed}
        sizes = {segment_id: store._segments[segment_id].size for segment_id in sealed}
    if not sealed:
        return None
    keep_ratio = 1 - limits.compaction_dead_ratio_min
    total_size, total_live = sum(sizes.values()), sum(live.values())
    if force_full or total_live <= total_size * keep_ratio and total_size >= store.segment_bytes_max:
        return Job(sealed, full=True)
    inputs = [segment_id for segment_id in sealed if live[segment_id] <= sizes[segment_id] * keep_ratio]
    if not inputs:
        return None
    return Job(inputs, full=inputs == sealed)


@dataclasses.dataclass
class _Output:
    writer: SegmentWriter
    entries: list = dataclasses.field(default_factory=list)  # (key, raft_index, location | None)


class _Copier:
    """Writes the live records of a job into outputs, rolling at the segment size, paced by a byte rate."""

    def __init__(self, store, job: Job):
        self.store = store
        self.job = job
        self.outputs: list[_Output] = []
        self.moved: list[tuple[str, int, int]] = []  # (key, old location, new location)
        self.tombstones: list[tuple[str, tuple[int, int], int | None]] = []
        self.max_index = max(store._segments[i].max_index for i in job.inputs)
        self.max_term = max(store._segments[i].max_term for i in job.inputs)
        self.copied_bytes = 0
        self.started = store._monotonic()

    def copy_segment(self, segment_id: int) -> None:
        """Copy the segment's live entries; consecutive entries of one raft index share a record."""
        store = self.store
        _, buffer, scan = read_segment_checked(store._fileops, store.generation_dir, segment_id)
        group: list = []  # (key, location | None, op) of one raft index
        group_index, group_bytes = None, 0
        for key, raft_index, location in self._live_entries(segment_id, scan):
            if location is None and self.job.full:
                self.tombstones.append((key, (raft_index, segment_id), None))
                continue
            if group and (raft_index != group_index or len(group) >= _group_ops_max or group_bytes >= _group_bytes_max):
                self._append(group_index, segment_id, group)
                group, group_bytes = [], 0
            if location is None:
                group.append((key, None, ("delete", key, None)))
            else:
                _, offset, length = unpack_location(location)
                group.append((key, location, ("put", key, buffer[offset : offset + length])))
                group_bytes += length
            group_index = raft_index
        if group:
            self._append(group_index, segment_id, group)

    def _live_entries(self, segment_id: int, scan: SegmentScan) -> list:
        store = self.store
        with store._state_lock:
            locations, tombstones = store._index.locations, store._index.tombstones
            return [
                (key, raft_index, location)
                for key, raft_index, location in scan.entries
                if (location is not None and locations.get(key) == location)
                or (location is None and tombstones.get(key) == (raft_index, segment_id))
            ]

    def _append(self, raft_index: int, segment_id: int, group: list) -> None:
        output = self._output()
        ops = [op for _, _, op in group]
        payload = encode_entry(raft_index, 0, ops)
        offset = output.writer.append(frame(RecordType.ENTRY, payload))
        value_offset = offset + frame_header_bytes + len(payload) - blob_bytes(ops)
        new_segment_id = output.writer.segment_id
        for key, location, (_op, _, value) in group:
            if location is None:
                output.entries.append((key, raft_index, None))
                self.tombstones.append((key, (raft_index, segment_id), new_segment_id))
                continue
            new_location = pack_location(new_segment_id, value_offset, len(value))
            output.entries.append((key, raft_index, new_location))
            self.moved.append((key, location, new_location))
            value_offset += len(value) + value_crc_bytes
        self._pace(frame_header_bytes + len(payload))

    def _output(self) -> _Output:
        if not self.outputs or self.outputs[-1].writer.size >= self.store.segment_bytes_max:
            self.outputs.append(_Output(self._create_writer()))
        return self.outputs[-1]

    def _create_writer(self) -> SegmentWriter:
        store = self.store
        with store._write_lock:
            segment_id = store.allocate_segment_id()
        job_id = self.outputs[0].writer.segment_id if self.outputs else segment_id
        header = SegmentHeader(
            segment_id, KIND_COMPACTION, self.max_index, self.max_term, list(self.job.inputs), job_id
        )
        return SegmentWriter.create(store._fileops, store.generation_dir, header, publish=False)

    def _pace(self, size: int) -> None:
        self.copied_bytes += size
        ahead = self.copied_bytes / self.store.compaction_rate_bytes_per_second
        delay = ahead - (self.store._monotonic() - self.started)
        if self.store._stop.is_set() or (delay > 0 and self.store._stop.wait(delay)):
            raise CompactionAborted("the store is closing")

    def finish_outputs(self) -> None:
        """fsync every output, write its hint, and rename both into place."""
        store = self.store
        fileops, directory = store._fileops, store.generation_dir
        self._output()  # a job always has one output: it carries `replaces` even when nothing is live
        for output in self.outputs:
            writer = output.writer
            writer.sync()
            scan = SegmentScan(
                SegmentHeader(writer.segment_id, KIND_COMPACTION, self.max_index, self.max_term),
                output.entries, self.max_index, self.max_term, writer.size, None, writer.crc,
            )
            hint_path = os.path.join(directory, hint_name(writer.segment_id))
            write_durably(fileops, hint_path + ".tmp", encode_hint(scan, writer.size))
        for output in self.outputs:
            segment_id = output.writer.segment_id
            hint_path = os.path.join(directory, hint_name(segment_id))
            fileops.rename(hint_path + ".tmp", hint_path)
            final = os.path.join(directory, segment_name(segment_id))
            fileops.rename(output.writer.path, final)
            output.writer.path = final
        fileops.fsync_dir(directory)

    def close_outputs(self, remove: bool) -> None:
        fileops = self.store._fileops
        for output in self.outputs:
            output.writer.close()
            if not remove:
                continue
            segment_id = output.writer.segment_id
            hint_path = os.path.join(self.store.generation_dir, hint_name(segment_id))
            segment_path = os.path.join(self.store.generation_dir, segment_name(segment_id))
            for path in (output.writer.path, segment_path, hint_path, hint_path + ".tmp"):
                if fileops.exists(path):
                    fileops.unlink(path)


def run(store, job: Job) -> None:
    copier = _Copier(store, job)
    committed = False
    try:
        for segment_id in job.inputs:
            copier.copy_segment(segment_id)
        copier.finish_outputs()
        job_id = copier.outputs[0].writer.segment_id
        write_atomically(
            store._fileops, store.generation_dir, manifest_name(job_id),
            frame_object(RecordType.RAFT_META, {"job": job_id, "replaces": job.inputs}),
        )
        committed = True
    except BaseException as error:
        if not committed:
            logger.warning("compaction of %d segments abandoned: %s", len(job.inputs), error)
        copier.close_outputs(remove=not committed)
        raise
    copier.close_outputs(remove=False)
    _swap(store, job, copier)
    _remove_inputs(store, job, job_id)


def _swap(store, job: Job, copier: _Copier) -> None:
    fileops = store._fileops
    readers = {
        output.writer.segment_id: fileops.open_read(output.writer.path) for output in copier.outputs
    }
    with store._write_lock, store._state_lock:
        index = store._index
        for key, old, new in copier.moved:
            index.move(key, old, new)
        for key, old, new_segment_id in copier.tombstones:
            index.move_tombstone(key, old, new_segment_id)
        for output in copier.outputs:
            writer = output.writer
            store._segments[writer.segment_id] = SegmentInfo(
                KIND_COMPACTION, writer.size, copier.max_index, copier.max_term, hinted=True
            )
        store._readers.update(readers)
        for segment_id in job.inputs:
            del store._segments[segment_id]
            fileops.close(store._readers.pop(segment_id))
            index.live_bytes.pop(segment_id, None)


def _remove_inputs(store, job: Job, job_id: int) -> None:
    fileops, directory = store._fileops, store.generation_dir
    for segment_id in job.inputs:
        for name in (segment_name(segment_id), hint_name(segment_id)):
            path = os.path.join(directory, name)
            if fileops.exists(path):
                fileops.unlink(path)
    fileops.fsync_dir(directory)
    fileops.unlink(os.path.join(directory, manifest_name(job_id)))
    fileops.fsync_dir(directory)
    logger.info("compacted %d segments into %s", len(job.inputs), segment_name(job_id))

