"""StateMachine: applies committed Raft entries to the store. Total and deterministic (DESIGN.md, hardening 3).

`apply(raft_index, raft_term, data)` is what pysyncobj's one replicated entry point calls, on its tick thread.
Every node must reach the same store state from the same log, and a raising apply wedges the cluster
(reference/pysyncobj.md §2.6), so:

- It reads no clock, randomness or network; the proposer stamped the time and the idempotency id.
- It never raises for anything the log holds. A malformed command, or one the store refuses as an invalid
  batch, becomes a "rejected" result, and the entry still advances the store's applied index through a batch
  without the command's ops. Every node refuses the same entries with the same reason, so all stay in lock-step.
- An entry at or below the store's applied index is a replay (pysyncobj re-applies its journal after a
  restart); it is ignored.
- An idempotency id seen before returns the earlier result and applies nothing again.

The one exception is a store that cannot write: StoreFailed (disk full, failed fsync), StoreClosed or
corruption. Refusing such an entry would also be wrong: other nodes applied it, so skipping it here would
diverge silently. It raises FatalApplyError instead, and raft/node.py must stop the process (not let pysyncobj
retry the entry forever); on restart the journal replays the entry into a healthy store.

Idempotency table: the last `ids_kept_max` ids of write and config commands (applied or rejected), each in
the store at `_raft/idempotency/<hex id>` as msgpack `[raft_index, outcome, reason]`, written in the same
atomic batch as the command's ops. It therefore survives restarts and travels in snapshots; memory holds a
copy ordered by raft index, reloaded from the store at start and after a snapshot restore (`reload`).
When full, the oldest id (lowest raft index) is deleted in the same batch, so every node evicts the same ids.
A retry whose id was evicted applies again: ids are kept for the last `ids_kept_max` commands only.
Noops (read barriers) are not recorded: they change nothing, so repeating one is harmless.
"""

import collections
import dataclasses
import logging
import threading
from collections.abc import Callable

import msgpack

from storage import Backend
from storage.errors import IndexNotMonotonic, InvalidBatch, SnapshotError, StorageError

from . import limits, restore
from .command import Command, Op, decode, reserved_prefix
from .errors import CommandRejected, FatalApplyError

logger = logging.getLogger(__name__)

idempotency_prefix = reserved_prefix + "idempotency/"

APPLIED = "applied"
REJECTED = "rejected"
IGNORED = "ignored"
OUTCOMES = (APPLIED, REJECTED, IGNORED)


@dataclasses.dataclass(frozen=True)
class ApplyResult:
    """What applying one entry did. `raft_index` is the entry that took effect (the first one, for a retry)."""

    raft_index: int
    outcome: str  # one of OUTCOMES
    reason: str = ""  # why it was rejected or ignored; empty when applied

    @property
    def ok(self) -> bool:
        return self.outcome == APPLIED


class StateMachine:
    """Not thread-safe for apply: one caller (the tick thread) applies; `lookup` may be called from anywhere."""

    def __init__(self, store: Backend, ids_kept_max: int = limits.idempotency_ids_kept_max):
        assert ids_kept_max > 0
        self._store = store
        self._ids_kept_max = ids_kept_max
        self._lock = threading.Lock()
        # invariant: holds exactly the ids under `idempotency_prefix` in the store, oldest raft index first
        self._recent: collections.OrderedDict[bytes, ApplyResult] = collections.OrderedDict()
        # Called on the applying thread with (raft_index, command) after every applied write, config, stage or
        # restore command: how the server above learns what changed under its caches. It must not raise.
        self.observer: Callable[[int, Command], None] | None = None
        self.reload()

    def reload(self) -> None:
        """Rebuild the idempotency table from the store; call after opening and after `store.restore`."""
        loaded = []
        for name in self._store.list(idempotency_prefix):
            loaded.append(_unpack_record(name, self._store.get(idempotency_prefix + name)))
        loaded.sort(key=lambda item: item[1].raft_index)
        with self._lock:
            self._recent = collections.OrderedDict(loaded)

    def lookup(self, idempotency_id: bytes) -> ApplyResult | None:
        """The result of the command with this id, if it is among the recent ones (the outcome-unknown check)."""
        with self._lock:
            return self._recent.get(idempotency_id)

    def apply(self, raft_index: int, raft_term: int, data: bytes) -> ApplyResult:
        """Apply one committed entry. Raises only FatalApplyError (the store cannot write); see the module doc."""
        if raft_index <= self._store.applied_index:
            return ApplyResult(raft_index, IGNORED, "replay of an applied entry")
        try:
            command = decode(data)
        except CommandRejected as error:
            return self._refuse(raft_index, raft_term, None, error.reason)
        except Exception as error:  # a codec bug: deterministic on every node, so refusing keeps lock-step
            return self._refuse(raft_index, raft_term, None, f"{type(error).__name__}: {error}")
        if command.kind == "noop":
            self._write(raft_index, raft_term, [])
            return ApplyResult(raft_index, APPLIED)
        earlier = self.lookup(command.idempotency_id)
        if earlier is not None:
            self._write(raft_index, raft_term, [])
            return earlier
        if command.kind == "restore":
            return self._restore(raft_index, raft_term, command)
        result = ApplyResult(raft_index, APPLIED)
        try:
            self._write(raft_index, raft_term, [*command.ops, *self._record_ops(command.idempotency_id, result)])
        except InvalidBatch as error:
            return self._refuse(raft_index, raft_term, command, str(error))
        self._remember(command.idempotency_id, result)
        self._notify(raft_index, command)
        return result

    def _restore(self, raft_index: int, raft_term: int, command: Command) -> ApplyResult:
        """Install the staged snapshot the command names (raft/restore.py); refuse it, deleting the chunks, if bad."""
        (_, folder, digest), = command.ops
        result = ApplyResult(raft_index, APPLIED)
        record = self._record_ops(command.idempotency_id, result)
        try:
            merged = restore.merged_stream(self._store, folder, digest, raft_index, raft_term, record)
        except SnapshotError as error:
            chunks = [("delete", key, None) for key, _ in restore.staged_chunks(self._store, folder)]
            return self._refuse(raft_index, raft_term, command, f"the snapshot cannot be restored: {error}", chunks)
        try:
            self._store.restore(merged)
        except (StorageError, OSError) as error:  # our own merged stream: only the disk can fail it
            raise FatalApplyError(raft_index, f"installing the restored snapshot failed: {error}") from error
        self.reload()
        logger.warning("raft: restored a snapshot at index %d", raft_index)
        self._notify(raft_index, command)
        return result

    def _notify(self, raft_index: int, command: Command) -> None:
        if self.observer is None:
            return
        try:
            self.observer(raft_index, command)
        except Exception:  # the apply has happened; a failing observer must not stop the log
            logger.exception("raft: the apply observer failed at index %d", raft_index)

    def _refuse(
        self, raft_index: int, raft_term: int, command: Command | None, reason: str, extra_ops: list[Op] = ()
    ) -> ApplyResult:
        """Advance the applied index without the command's ops; remember the refusal under its id, if it has one."""
        result = ApplyResult(raft_index, REJECTED, reason[: limits.rejection_reason_chars_max])
        ops = list(extra_ops) + ([] if command is None else self._record_ops(command.idempotency_id, result))
        try:
            self._write(raft_index, raft_term, ops)
        except InvalidBatch as error:  # our own small batch cannot be invalid; if it is, we cannot advance
            raise FatalApplyError(raft_index, f"the store refused the rejection record: {error}") from error
        if command is not None:
            self._remember(command.idempotency_id, result)
        return result

    def _write(self, raft_index: int, raft_term: int, ops: list[Op]) -> None:
        """One atomic store batch. InvalidBatch passes through (nothing was written); every other failure is fatal."""
        try:
            self._store.apply(raft_index, ops, raft_term)
        except IndexNotMonotonic as error:  # someone else writes to our store: its state is not ours to trust
            raise FatalApplyError(raft_index, str(error)) from error
        except InvalidBatch:
            raise
        except StorageError as error:
            raise FatalApplyError(raft_index, f"{type(error).__name__}: {error}") from error
        except Exception as error:  # unknown whether the batch landed: stopping is the only safe answer
            raise FatalApplyError(raft_index, f"{type(error).__name__}: {error}") from error

    def _record_ops(self, idempotency_id: bytes, result: ApplyResult) -> list[Op]:
        ops: list[Op] = [("put", idempotency_prefix + idempotency_id.hex(), _pack_result(result))]
        with self._lock:
            if len(self._recent) >= self._ids_kept_max:
                oldest = next(iter(self._recent))
                ops.append(("delete", idempotency_prefix + oldest.hex(), None))
        return ops

    def _remember(self, idempotency_id: bytes, result: ApplyResult) -> None:
        """Mirror in memory what `_record_ops` just wrote to the store."""
        with self._lock:
            if len(self._recent) >= self._ids_kept_max:
                self._recent.popitem(last=False)
            self._recent[idempotency_id] = result


def _pack_result(result: ApplyResult) -> bytes:
    return msgpack.packb([result.raft_index, result.outcome, result.reason], use_bin_type=True)


def _unpack_record(name: str, raw: bytes | None) -> tuple[bytes, ApplyResult]:
    """A stored table entry; a malformed one means the store is damaged or not ours, so refuse to start."""
    try:
        idempotency_id = bytes.fromhex(name)
        raft_index, outcome, reason = msgpack.unpackb(raw, raw=False)
    except (ValueError, TypeError, msgpack.UnpackException):
        idempotency_id, raft_index, outcome, reason = b"", None, None, None
    if (
        len(idempotency_id) != limits.idempotency_id_bytes
        or not isinstance(raft_index, int)
        or outcome not in OUTCOMES
        or not isinstance(reason, str)
    ):
        raise FatalApplyError(0, f"the idempotency record {idempotency_prefix + name} is malformed")
    return idempotency_id, ApplyResult(raft_index, outcome, reason)
