"""ReplicatedPhysical: the Physical protocol (vaultd/core/physical.py) over a RaftNode. DESIGN.md §Read path.

Writes. `put`, `delete` and `transaction` propose one `Command(kind="write")` with a fresh idempotency id (from
the rng we are given) and the clock's time, await `node.submit`, and return the entry's raft index. Group
commit, shaped like LocalPhysical: transactions that arrive while a proposal is in flight are merged, in arrival
order, into the next command (one Raft entry, applied atomically by the state machine), bounded by
`limits.command_ops_max` ops and `group_bytes_max` bytes; a single transaction always goes, alone if need be.
Every transaction is checked on its own first (store limits, the reserved `_raft/` prefix, the op count), so a
bad one fails alone instead of poisoning the group. A group the state machine still rejects fails as a whole
with CommandRejected (every member's ops were refused together, nothing applied).

Outcome-unknown semantics. A command's ops were computed from this node's state in the current term, so it is
never proposed in another term: a later term may hold writes it did not see, and applying it after them would
overwrite them (jepsen_lite found exactly that lost update). ProposalTimeout is retried ONCE with the SAME
command (same idempotency id) only while this node still leads in the same term: if the first proposal
committed, the state machine answers the retry with the first entry's result, so the write is applied at most
once. NotLeader is never retried. Before giving up, the local idempotency table is consulted: if the entry did
apply here, its index is returned. When the error still propagates, the outcome stays unknown: the write may
or may not have been applied. (raft/node.py also never lets pysyncobj forward a proposal to another leader.)

Reads. `get`/`list` read the local store with no barrier: what a standby serves, possibly stale.
`read_barrier()` (the leader's linearizable read) proposes a `noop` and returns its raft index once it is
applied here; committing an entry of its own term is what proves this node still leads (pysyncobj can briefly
have two leaders). Barriers coalesce: every caller that arrives before a barrier is proposed shares it; a
caller arriving while one is in flight waits for the NEXT one, because an in-flight noop may sit below a write
acknowledged after it was proposed. Barrier failures are not retried: the read fails (noops need no id).
`wait_for_index(index, timeout)` (X-Vault-Index on a standby) polls the store's applied index; IndexNotReached
after `timeout`. Every wait is bounded: proposals by `proposal_timeout_seconds` (plus one retry), index waits by
the caller's timeout.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence

from storage import InvalidBatch
from storage.batch import group_size, validate_ops

from . import limits, restore
from .command import Command, Op, new_idempotency_id
from .errors import CommandRejected, NotLeader, ProposalTimeout, QueueFull, RaftError
from .state_machine import REJECTED, ApplyResult

logger = logging.getLogger(__name__)

group_bytes_max = 8 * 1024 * 1024  # keys and values of one merged command; well under limits.command_bytes_max
pending_transactions_max = 10_000  # queued behind the proposal in flight; past it, QueueFull
proposal_timeout_seconds = 5.0
index_poll_seconds = 0.005

assert group_bytes_max < limits.command_bytes_max


class IndexNotReached(RaftError):
    """The local store did not reach the requested applied index in time (X-Vault-Index: answer 412)."""

    retryable = True

    def __init__(self, index: int, applied_index: int, timeout: float):
        super().__init__(f"applied index {applied_index} did not reach {index} within {timeout} s")
        self.index = index
        self.applied_index = applied_index


class ReplicatedPhysical:
    """Physical over Raft. Use from one event loop; `node` is a RaftNode, `store` the Backend it applies into."""

    def __init__(
        self,
        node,
        store,
        rng: random.Random,
        clock: Callable[[], float],
        *,
        proposal_timeout: float = proposal_timeout_seconds,
    ) -> None:
        assert proposal_timeout > 0
        self._node = node
        self._store = store
        self._rng = rng
        self._clock = clock  # unix seconds, stamped into each command
        self._proposal_timeout = proposal_timeout
        self._pending: list[tuple[list[Op], asyncio.Future]] = []
        self._committer: asyncio.Task | None = None
        self._next_barrier: asyncio.Future | None = None  # joined by callers until its noop is proposed
        self._barrier_task: asyncio.Task | None = None
        # Ids of the commands this object has in flight: the apply observer tells its own writes (whose caches the
        # proposer keeps itself) from other nodes'. Added before proposing, removed once the outcome is known.
        self.own_ids: set[bytes] = set()
        self.proposals = 0  # write commands proposed (retries not counted), for tests and metrics
        self.barriers = 0  # noops proposed

    # --- reads ----------------------------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        return self._store.get(key)

    async def list(self, prefix: str) -> list[str]:
        return self._store.list(prefix)

    async def read_barrier(self) -> int:
        """On the leader: the raft index of a noop proposed after this call, once committed and applied here."""
        if self._next_barrier is None:
            self._next_barrier = asyncio.get_running_loop().create_future()
            self._next_barrier.add_done_callback(_retrieve)
        future = self._next_barrier
        if self._barrier_task is None or self._barrier_task.done():
            self._barrier_task = asyncio.create_task(self._run_barriers(), name="raft-read-barrier")
        return await asyncio.shield(future)  # one cancelled reader must not cancel the others' barrier

    async def _run_barriers(self) -> None:
        while self._next_barrier is not None:
            future, self._next_barrier = self._next_barrier, None  # later callers wait for the next noop
            try:
                command = Command("noop", (), new_idempotency_id(self._rng), float(self._clock()))
                self.barriers += 1
                result = await self._node.submit(command, self._proposal_timeout)
                index = _index_of(result)
            except BaseException as error:
                if not future.done():
                    future.set_exception(error if isinstance(error, Exception) else RaftError("barrier cancelled"))
                if not isinstance(error, Exception):
                    raise
                continue
            if not future.done():
                future.set_result(index)

    async def wait_for_index(self, index: int, timeout: float) -> int:
        """Wait until the local store has applied `index`; returns the applied index, or IndexNotReached."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        while True:
            applied = self._store.applied_index
            if applied >= index:
                return applied
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise IndexNotReached(index, applied, timeout)
            await asyncio.sleep(min(index_poll_seconds, remaining))

    # --- writes ---------------------------------------------------------------------------------------------

    async def put(self, key: str, value: bytes) -> int:
        return await self.transaction([("put", key, value)])

    async def delete(self, key: str) -> int:
        return await self.transaction([("delete", key, None)])

    async def transaction(self, ops: Sequence[Op]) -> int:
        """Apply `ops` atomically on every node; the raft index of the entry that carried them."""
        checked = _checked_transaction(ops)
        if len(self._pending) >= pending_transactions_max:
            raise QueueFull("the replicated write queue is full; retry later")
        future = asyncio.get_running_loop().create_future()
        self._pending.append((checked, future))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_pending(), name="raft-group-commit")
        return await future

    async def _commit_pending(self) -> None:
        while self._pending:
            group = self._take_group()
            try:
                ops = [op for transaction, _ in group for op in transaction]
                command = Command("write", ops, new_idempotency_id(self._rng), float(self._clock()))
                self.proposals += 1
                index = await self.propose(command)
            except BaseException as error:  # every waiter learns the outcome, whatever it was
                for _, future in group:
                    if not future.done():
                        future.set_exception(error if isinstance(error, Exception) else RaftError("write cancelled"))
                if not isinstance(error, Exception):
                    raise
                continue
            for _, future in group:
                if not future.done():
                    future.set_result(index)

    def _take_group(self) -> list[tuple[list[Op], asyncio.Future]]:
        """The oldest pending transactions, up to the command's op count and the byte budget (at least one)."""
        taken = group_size([transaction for transaction, _ in self._pending], limits.command_ops_max, group_bytes_max)
        group, self._pending = self._pending[:taken], self._pending[taken:]
        return group

    async def propose(self, command: Command) -> int:
        """Submit, with one retry of the SAME command on an unknown outcome (module doc); the entry's raft index."""
        self.own_ids.add(command.idempotency_id)
        try:
            return await self._propose(command)
        finally:
            self.own_ids.discard(command.idempotency_id)

    async def restore(self, fileobj) -> int:
        """Replace every node's state by the store export stream in `fileobj`, through the log (raft/restore.py)."""
        return await restore.propose_restore(self.propose, fileobj, self._rng, self._clock)

    async def _propose(self, command: Command) -> int:
        failure: RaftError | None = None
        term = self._node.term  # the term whose state the command was computed from
        for attempt in (1, 2):
            try:
                return _index_of(await self._node.submit(command, self._proposal_timeout))
            except ProposalTimeout as error:
                failure = error
            except NotLeader as error:
                failure = error
                break  # never re-proposed under another leader: its ops were computed from this term's state
            if not (self._node.is_leader() and self._node.term == term):
                break  # a later term may hold writes the command did not see: retrying could overwrite them
            if attempt == 1:
                logger.warning("raft: a write's outcome is unknown (%s); retrying it once, same id", failure)
        earlier = self._node.state_machine.lookup(command.idempotency_id)
        if earlier is not None:  # it did apply here after all: the outcome is known
            return _index_of(earlier)
        assert failure is not None
        raise failure


def _index_of(result: ApplyResult) -> int:
    if result.outcome == REJECTED:
        raise CommandRejected(result.reason or "the state machine rejected the command")
    return result.raft_index


def _checked_transaction(ops: Sequence[Op]) -> list[Op]:
    """The transaction's ops if they could go into a command on their own; CommandRejected otherwise."""
    try:
        checked = validate_ops(ops)
    except InvalidBatch as error:
        raise CommandRejected(str(error)) from None
    if not checked:
        raise CommandRejected("a transaction holds at least one op")
    Command("write", checked, bytes(limits.idempotency_id_bytes), 0.0)  # op count, reserved prefix, shape
    return checked


def _retrieve(future: asyncio.Future) -> None:
    """A barrier whose every reader was cancelled must not log 'exception never retrieved'."""
    if not future.cancelled():
        future.exception()
