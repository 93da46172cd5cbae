"""Snapshots written off the raft tick thread.

Why. pysyncobj calls a custom serializer on its tick thread, and the tick thread is what sends heartbeats. A
snapshot of 200,000 store keys (68 MB) takes about 0.8 s on an idle machine and longer under load, which is
the election timeout: `make bench-cluster` saw a leader election while it filled 100,000 keys.

How. pysyncobj 0.3.17 supports an asynchronous custom serializer (`SyncObjConf.serializeChecker`,
serializer.py:28-34; syncobj.py:1421-1434):
- `start` is the serializer hook. On the tick thread, between applies, it records the raft position and starts
  a thread that writes the store's export stream plus that position to `<snapshot>.bg.tmp`, fsynced
  (raft/snapshot.write). The store's view is taken when the thread starts, so the stream's index may be past
  the position: raft/snapshot.load accepts that, and the replay skips what the store already holds.
- The hook does not create pysyncobj's `.tmp`, so pysyncobj's own rename fails quietly (its state becomes
  "failed", which the checker overrides), and it never renames a file that is still being written.
- `check` is the serializeChecker (through raft/node.py, which maps its answers to pysyncobj's
  SERIALIZER_STATE), also on the tick thread. While the thread runs it answers WRITING (SERIALIZING):
  pysyncobj neither compacts nor starts another snapshot. When the thread is done, the file is renamed over the
  snapshot path (the directory is fsynced) and `on_installed` runs (the node links `.good`). Only then does it
  answer INSTALLED (SUCCESS), and only then does pysyncobj drop the journal entries the snapshot covers. A
  failed write answers FAILED: pysyncobj logs it, keeps its journal, and tries again at the next trigger.
- A snapshot received from the leader while ours is being written (`installed_elsewhere`, called by the
  node's deserializer) makes ours stale. It is discarded rather than renamed over the newer one.
- Every file operation on the snapshot path happens on the tick thread, as pysyncobj's own do, so a received
  snapshot and ours never race on the rename.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable

from . import snapshot

logger = logging.getLogger(__name__)

work_suffix = ".bg.tmp"
# What `check` answers; raft/node.py (the one module that imports pysyncobj) maps them to SERIALIZER_STATE.
IDLE, WRITING, INSTALLED, FAILED = "idle", "writing", "installed", "failed"


class BackgroundSnapshots:
    def __init__(self, snapshot_path: str, store, on_installed: Callable[[str], None]):
        self._path = snapshot_path
        self._work_path = snapshot_path + work_suffix
        self._store = store
        self._on_installed = on_installed
        self._thread: threading.Thread | None = None
        self._position: snapshot.RaftPosition | None = None
        self._outcome: int | BaseException | None = None  # the key count, or what failed
        self._installs = 0  # snapshots received from the leader, counted by `installed_elsewhere`
        self._installs_at_start = 0
        with contextlib.suppress(FileNotFoundError):
            os.remove(self._work_path)  # left by a crash mid-write: never complete, never renamed

    def start(self, pysyncobj_tmp_path: str, data) -> None:
        """pysyncobj's serializer hook: `data` is `(last, prev, cluster)`. Returns at once."""
        with contextlib.suppress(FileNotFoundError):  # a stale one would be renamed over the snapshot by pysyncobj
            os.remove(pysyncobj_tmp_path)
        if self._thread is not None:  # pysyncobj asks only after SUCCESS or FAILED; be safe anyway
            return
        last, prev, cluster = data
        self._position = snapshot.RaftPosition(tuple(last), tuple(prev), tuple(sorted(node.id for node in cluster)))
        self._outcome = None
        self._installs_at_start = self._installs
        self._thread = threading.Thread(target=self._write, name="raft-snapshot", daemon=True)
        self._thread.start()

    def _write(self) -> None:
        try:
            self._outcome = snapshot.write(self._work_path, self._store, self._position)
        except BaseException as error:  # reported by `check` on the tick thread
            self._outcome = error

    def check(self) -> str:
        """pysyncobj's serializeChecker, on the tick thread."""
        if self._thread is None:
            return IDLE
        if self._thread.is_alive():
            return WRITING
        self._thread.join()
        self._thread = None
        return self._finish()

    def _finish(self) -> str:
        index = self._position.last[1]
        if isinstance(self._outcome, BaseException):
            logger.error("raft: snapshot at index %d failed: %r", index, self._outcome)
            return self._discard()
        if self._installs != self._installs_at_start:
            logger.info("raft: snapshot at index %d dropped: a snapshot from the leader was installed meanwhile",
                        index)
            return self._discard()
        try:
            os.replace(self._work_path, self._path)
            _fsync_directory(self._path)
            self._on_installed(self._path)
        except OSError as error:
            logger.error("raft: installing the snapshot at index %d failed: %r", index, error)
            return self._discard()
        logger.info("raft: snapshot at index %d (%d keys), written in the background", index, self._outcome)
        return INSTALLED

    def _discard(self) -> str:
        with contextlib.suppress(FileNotFoundError):
            os.remove(self._work_path)
        return FAILED

    def installed_elsewhere(self) -> None:
        """A snapshot from the leader replaced the store and the snapshot file: one being written is stale."""
        self._installs += 1

    def close(self, timeout: float) -> None:
        """Wait (bounded) for a write in progress; an unfinished one is removed at the next start."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)


def _fsync_directory(path: str) -> None:
    directory = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
