"""RaftNode: one Raft member on pysyncobj 0.3.17, hardened through its extension points (DESIGN.md §Raft).

The only module that imports pysyncobj. Line numbers below are pysyncobj 0.3.17's; tests/raft/test_node.py
fails if an upgrade breaks any of these hardenings.

1. Transport (hardening 1).
   * `password` is the 256-bit cluster key; construction refuses anything else. Fernet's HMAC is verified
     before anything is unpickled (tcp_connection.py:284-291), so an unauthenticated pickle frame runs nothing.
   * `bindAddress` is the node's own raft address (transport.py:264-273 binds 0.0.0.0 otherwise); wildcard
     hosts are refused.
   * Frame size: SyncObjConf has NO receive-side bound (only `appendEntriesBatchSizeBytes`, a send-side batch
     target, and the socket buffer sizes); the 4-byte length prefix is trusted and the read buffer grows without
     limit (pysyncobj #174). `_HardenedTransport` bounds it: every TcpConnection it gets (incoming:
     `_onNewIncomingConnection`, transport.py:316; outgoing: `_connectIfNecessarySingle`, transport.py:411) is
     switched to `_BoundedConnection`, which overrides the name-mangled `__processRead` (tcp_connection.py:261)
     to drop the connection once a declared length is negative or over `frame_bytes_max`, or the unparsed buffer
     exceeds `2 * frame_bytes_max`. Private names: a test sends an oversized prefix and expects a disconnect.
   * Utility commands (`status`, `transfer`, ...) and `readonly` peers are refused on incoming connections
     (`_onIncomingMessageReceived`, transport.py:331-373); only configured voters may connect.
   * Snapshots: see hardening 5 below; `useFork=False` (a custom serializer is never forked anyway).
2. Durability (hardening 2). `DurableJournal` replaces `pysyncobj.syncobj.createJournal` (syncobj.py:41, called
   once at syncobj.py:166) while the SyncObj is constructed, under a lock, then the original is put back.
   `_HardenedTransport.send` (overriding transport.py:556, through which every Raft message goes: votes,
   AppendEntries and their acks, forwarded commands) calls `journal.flush()` first; an on-tick callback
   (`addOnTickCallback`, syncobj.py:736) flushes too, which covers a single-node cluster that sends nothing.
   Handshake frames (`conn.send` inside the transport) carry no Raft state. Term and vote are persisted by
   `DurableJournal.setCurrentTerm` before pysyncobj sends the vote.
3. Apply. One `@replicated` method, `_apply_entry(data: bytes)`. Its Raft index is `raftLastApplied + 1`:
   pysyncobj increments `raftLastApplied` only after the method returns (syncobj.py:711-725). Its term is read
   from the journal entry at that index (entries are `(command, index, term)`) and checked against the index.
   A FatalApplyError (or a failing journal) stops the node: the error is re-raised out of `doTick`, so
   `raftLastApplied` never moves past the unapplied entry and nothing more is sent; the tick thread ends,
   the transport is destroyed, pending submits fail with the error, `on_fatal` is called (default: logs
   CRITICAL). The process owner should exit; a restart replays the entry from the journal.
4. Ticking: `autoTick=False` and our own daemon thread calling `doTick`. pysyncobj's autoTick thread quits
   when the thread that constructed the SyncObj exits (syncobj.py:587-588), retries a failing tick forever
   (592-597), and binds in the background; with manual ticking the constructor binds synchronously and fails
   (`maxBindRetries`) when the port is taken, and fatal errors stop the loop.
5. Snapshots (hardening 5): log compaction is on, and a snapshot is our store's export stream, never a pickle.
   `fullDumpFile` is `snapshot_path`; the serializer and serializeChecker hooks are BackgroundSnapshots'
   `start` and `check` (raft/background_snapshot.py: the stream is written by a thread of its own, so the tick
   thread keeps sending heartbeats, and pysyncobj compacts only once `check` has renamed the finished,
   fsynced file into place), and the deserializer is `_load_snapshot` (raft/snapshot.py has the file format
   and what pysyncobj passes). With a custom serializer pysyncobj neither forks nor pickles
   `SyncObj.__dict__` (syncobj.py:1460-1470 passes data[0]=None, and serializer.py:88 hands only
   `(last, prev, cluster)` to the hook). Compaction triggers when the journal holds more than
   `compaction_min_entries` entries or `compaction_min_seconds` have passed with new applies
   (syncobj.py:1436). The export takes the store's view when the thread starts, at or past the position
   pysyncobj gave. Files beside `snapshot_path`: `.bg.tmp` (ours, being written), `.1.tmp` (a snapshot
   arriving from the leader), and `.good`, our hard link to the last verified snapshot, made durable before
   `check` answers SUCCESS, i.e. before pysyncobj drops journal entries. At start, when
   `snapshot_path` is missing or is not `.good` (a crash between pysyncobj's rename and our load),
   `.good` is put back. `_load_snapshot` restores the store only when it is behind the snapshot (the store is
   durable: at a restart it is usually ahead) and then reloads the state machine. A defective snapshot
   (SnapshotError) leaves the store as it was; one received from the leader is replaced by `.good` again
   (pysyncobj has already renamed it over ours; it logs the error, keeps its journal, and the leader sends
   the snapshot again), while a defect in our own snapshot at start stops the node (its journal was compacted).
6. Async bridge. `await submit(command, timeout)` proposes on this node only when it believes it leads;
   otherwise it raises NotLeader at once (no forwarding: the HTTP layer redirects or forwards to the leader).
   pysyncobj's callback runs on the tick thread and hands the outcome to the caller's loop with
   `call_soon_threadsafe`. `sync=True` is never used; `commandsWaitLeader=False` makes a leaderless proposal fail
   fast. A proposal that races a leadership change may still be forwarded by pysyncobj (syncobj.py:554-566);
   its outcome is reported the same way, and the command's idempotency id makes any retry safe.
7. Membership (hardening 6; reference §7.1). `dynamicMembershipChange=True`. `await add_peer(addr, timeout)` /
   `await remove_peer(addr, timeout)` on the leader (NotLeader elsewhere) propose pysyncobj's MEMBERSHIP entry
   (`addNodeToCluster`/`removeNodeFromCluster`, syncobj.py:370-400) and return once it is committed and applied
   here. pysyncobj's own one-at-a-time guard never fires (`__changeClusterIDx` is never assigned), so we
   serialize: callers queue on an asyncio lock, and a change counts as in flight from its proposal until
   pysyncobj's callback fires (or the node stops), NOT until the caller's timeout: a caller that got
   ProposalTimeout leaves the change in flight, and the next caller waits for it (or times out too). The
   change takes effect on the leader when appended, on a follower when received (syncobj.py:521-527,
   1009-1013). Refusals are MembershipRejected (a CommandRejected): already a member, not a member, removing
   this node (pysyncobj refuses to remove the leader: transfer leadership first), or the new leader's no-op not
   yet applied (syncobj.py:1356-1358; retry shortly). `configuration()` reports the servers like Vault's
   sys/storage/raft/configuration, from this node's view.
   Join: a new node is constructed with the current members as `partner_addrs` (pysyncobj has no discovery,
   #50/#185); until the leader's add_peer appends it, the members drop its connections, and it starts no
   election while connected to no one (syncobj.py:626). A removed node is dropped by the members at once and
   may never see its own removal: its owner must stop it. At a restart `partner_addrs` only seeds the peer set;
   the snapshot's member list replaces it (syncobj.py:1507) and journal entries after it are replayed.
   Snapshots: pysyncobj stores the last two applied entries with a snapshot and raft/snapshot.py refuses a
   MEMBERSHIP entry there (it pickles TCPNode objects). `_Replica` therefore defers starting a compaction while
   either of the last two applied entries is a membership entry (two later applies, e.g. any writes, clear it);
   membership itself travels in the snapshot's member list. Compaction is only delayed, never skipped: an idle
   cluster right after a change grows no journal.
"""

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import queue
import socket
import struct
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping

from pysyncobj import syncobj as _pso_syncobj
from pysyncobj import tcp_connection as _pso_tcp_connection
from pysyncobj.config import FAIL_REASON, SERIALIZER_STATE, SyncObjConf
from pysyncobj.node import TCPNode
from pysyncobj.poller import POLL_EVENT_TYPE
from pysyncobj.syncobj import SyncObj, replicated
from pysyncobj.tcp_connection import TcpConnection
from pysyncobj.transport import TCPTransport

from . import background_snapshot, limits, snapshot
from .background_snapshot import BackgroundSnapshots
from .command import Command, encode
from .errors import CommandRejected, FatalApplyError, NotLeader, ProposalTimeout, QueueFull, RaftError
from .journal import DurableJournal, JournalError
from .keyfile import key_bytes
from .state_machine import ApplyResult, StateMachine

logger = logging.getLogger(__name__)

_serializer_states = {
    background_snapshot.IDLE: SERIALIZER_STATE.NOT_SERIALIZING,
    background_snapshot.WRITING: SERIALIZER_STATE.SERIALIZING,
    background_snapshot.INSTALLED: SERIALIZER_STATE.SUCCESS,
    background_snapshot.FAILED: SERIALIZER_STATE.FAILED,
}

# Largest frame accepted from a peer: one command plus pysyncobj's framing, zlib (which may grow incompressible
# data slightly), and Fernet's base64 (4/3), with room for the AppendEntries batch around it.
frame_bytes_max = 32 * 1024 * 1024
assert frame_bytes_max >= (limits.command_bytes_max + limits.command_framing_bytes + (1 << 20)) * 4 // 3
# Unparsed bytes buffered on one connection before it is dropped (several frames may arrive in one read burst).
read_buffer_bytes_max = 2 * frame_bytes_max
_wildcard_hosts = ("", "0.0.0.0", "::", "[::]", "*")
_create_journal_lock = threading.Lock()
_membership_command_type = b"\x02"  # pysyncobj's _COMMAND_TYPE.MEMBERSHIP
# Log compaction (a snapshot of the store, then the journal is cut): when the journal holds more entries than
# this, or when this much time has passed with new applies. Tests pass small values.
COMPACTION_MIN_ENTRIES = 5000
COMPACTION_MIN_SECONDS = 300.0
snapshot_close_wait_seconds = 30.0  # a background snapshot being written when the node closes
step_down_resend_seconds = 1.0  # a TimeoutNow the target did not act on (a lost message) is sent again after this


@dataclasses.dataclass(frozen=True)
class RaftTiming:
    """Timers in seconds. Defaults follow reference/pysyncobj.md §10.3; tests pass faster ones."""

    tick_seconds: float = 0.01
    append_entries_seconds: float = 0.02
    election_min_seconds: float = 1.0
    election_max_seconds: float = 2.0
    # Large: pysyncobj drops a link on send after this much read silence (reference §6.6, bug 1).
    connection_timeout_seconds: float = 10.0
    connection_retry_seconds: float = 0.5
    # Fail-fast step-down of a cut-off leader; a hint, never a read lease.
    leader_fallback_seconds: float = 1.0
    bind_retry_seconds: float = 0.2
    bind_attempts_max: int = 10


class _BoundedConnection(TcpConnection):
    """A TcpConnection whose read buffer is bounded (pysyncobj #174). Installed by `_HardenedTransport`."""

    def _TcpConnection__processRead(self):  # overrides the name-mangled TcpConnection.__processRead
        more = TcpConnection._TcpConnection__processRead(self)
        buffered = self._TcpConnection__readBuffer
        if len(buffered) >= 4:
            (declared,) = struct.unpack("i", buffered[:4])
            if declared < 0 or declared > frame_bytes_max or len(buffered) > read_buffer_bytes_max:
                logger.warning(
                    "raft: dropping a connection that sent a frame of %d bytes (bound %d)", declared, frame_bytes_max
                )
                self.disconnect()
                return False
        return more


_connecting = threading.local()  # the host a tick thread's outgoing raft connections bind to


class _SourceBindingSockets:
    """What pysyncobj's tcp_connection module sees as `socket`: new sockets bind to the connecting node's host.

    pysyncobj's `TcpConnection.connect` (tcp_connection.py:114-130) creates and connects its socket in one call,
    leaving the source address to the kernel, which picks 127.0.0.1 for every loopback peer. A partition cut by
    source and destination address (reference/jepsen.md §4) would then not cut raft at all. Outgoing connections
    are made on the tick thread inside `_HardenedTransport._connectIfNecessarySingle`, which names the host here.
    """

    def __getattr__(self, name):
        return getattr(socket, name)

    @staticmethod
    def socket(*args, **kwargs):
        sock = socket.socket(*args, **kwargs)
        host = getattr(_connecting, "host", None)
        if host is not None:
            try:
                sock.bind((host, 0))
            except OSError:
                sock.close()
                raise
        return sock


_pso_tcp_connection.socket = _SourceBindingSockets()


class _HardenedTransport(TCPTransport):
    """TCPTransport that flushes the journal before every send, bounds frames and refuses utility/readonly."""

    def send(self, node, message):
        self._syncObj._flush_journal()
        return super().send(node, message)

    def _onNewIncomingConnection(self, conn):
        _bound(conn)
        # pysyncobj sets TCP_NODELAY only on the sockets it connects (tcp_connection.py:122). Messages flow both
        # ways on one connection, so the accepted end otherwise holds each small reply back under Nagle's
        # algorithm until the previous segment is acknowledged.
        conn._TcpConnection__socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super()._onNewIncomingConnection(conn)

    def _connectIfNecessarySingle(self, node):
        _connecting.host = self._syncObj._node.bind_host
        try:
            result = super()._connectIfNecessarySingle(node)
        finally:
            _connecting.host = None
        conn = self._connections.get(node)
        if conn is not None:
            _bound(conn)
        return result

    def _onIncomingMessageReceived(self, conn, message):
        # With a password the first message is the peer's random key; after it only a voter's address may come.
        if conn.sendRandKey and (isinstance(message, list) or message == "readonly"):
            logger.warning("raft: refused a utility or readonly connection")
            conn.disconnect()
            self._unknownConnections.discard(conn)
            return
        super()._onIncomingMessageReceived(conn, message)


def _bound(conn) -> None:
    if type(conn) is TcpConnection:
        conn.__class__ = _BoundedConnection


class _Wakeup:
    """A pipe in the tick thread's poller: `notify()` from any thread ends its poll at once, so that a proposal
    or a task is picked up now instead of at the end of the tick's poll timeout."""

    def __init__(self, poller):
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        poller.subscribe(self._read, self._drain, POLL_EVENT_TYPE.READ)

    def notify(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):  # full: a wake-up is pending anyway; closed: stopped
            os.write(self._write, b"!")

    def _drain(self, _descriptor, _event_mask) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._read, 4096):
                pass

    def close(self) -> None:
        for descriptor in (self._read, self._write):
            with contextlib.suppress(OSError):
                os.close(descriptor)


class _Replica(SyncObj):
    """The SyncObj with the one replicated entry point. All calls come from RaftNode's tick thread."""

    def __init__(self, node: "RaftNode", self_addr, partner_addrs, conf):
        self._node = node
        super().__init__(self_addr, partner_addrs, conf, transportClass=_HardenedTransport)

    def _flush_journal(self) -> None:
        self._node._flush_journal()

    @replicated
    def _apply_entry(self, data):
        return self._node._apply_entry(self.raftLastApplied + 1, data)

    def _checkCommandsToApply(self):  # syncobj.py:502; runs each tick after the periodic AppendEntries
        if not self._isLeader():
            # pysyncobj would forward a queued proposal to the new leader (syncobj.py:554-566), which would append
            # it in a later term than the one whose state it was computed from: refuse it instead.
            self._refuse_queued_commands()
            return
        before = self._SyncObj__getCurrentLogIndex()
        super()._checkCommandsToApply()
        if self._isLeader() and self._SyncObj__getCurrentLogIndex() > before:
            self._SyncObj__sendAppendEntries()  # replicate new entries now, not one appendEntriesPeriod later

    def _SyncObj__onMessageReceived(self, node, message):  # overrides SyncObj.__onMessageReceived (syncobj.py:909)
        if message.get("type") == "append_entries" and message.get("entries") and "prevLogIdx" in message \
                and message.get("transmission") is None:
            message = self._without_held_entries(message)
        return SyncObj._SyncObj__onMessageReceived(self, node, message)

    def _without_held_entries(self, message: dict) -> dict:
        """The AppendEntries without the leading entries this log already holds.

        pysyncobj deletes everything after prevLogIdx on every AppendEntries and appends the entries again
        (syncobj.py:990-1004), even when they are the same. The leader re-sends entries not yet acknowledged
        each time new ones arrive, so under load every message cost a journal rewrite with two fsyncs on the
        follower's tick thread. An entry with the same index and term is the same entry (Raft's log matching
        property), so the held prefix moves into prevLogIdx: the follower's answer and the leader's view of
        it are unchanged, and a real conflict still truncates from the first entry that differs."""
        entries = message["entries"]
        held = 0
        for _data, index, term in entries:
            mine = self._SyncObj__getEntries(index, 1)
            if not mine or mine[0][2] != term:
                break
            held += 1
        if held == 0:
            return message
        _data, last_index, last_term = entries[held - 1]
        return {**message, "prevLogIdx": last_index, "prevLogTerm": last_term, "entries": entries[held:]}

    def _refuse_queued_commands(self) -> None:
        queue_ = self._SyncObj__commandsQueue
        while True:
            try:
                _command, callback = queue_.get_nowait()
            except queue.Empty:  # pysyncobj's FastQueue raises the standard library's
                return
            if callable(callback):
                callback(None, FAIL_REASON.NOT_LEADER)

    def _SyncObj__applyLogEntries(self):  # overrides the name-mangled SyncObj.__applyLogEntries (syncobj.py:716)
        applied = self.raftLastApplied
        send = SyncObj._SyncObj__applyLogEntries(self)
        # The leader just committed and applied: tell the followers the new commit index now, so that they
        # apply (and standbys serve the write) without waiting for the next heartbeat.
        return send or (self._isLeader() and self.raftLastApplied > applied)

    def _SyncObj__tryLogCompaction(self):  # overrides the name-mangled SyncObj.__tryLogCompaction (syncobj.py:1419)
        # Only when no serialization is pending (pid 0): one that has finished must still be collected by pysyncobj.
        if self._SyncObj__serializer._Serializer__pid == 0 and self._membership_at_compaction_point():
            return  # hardening 6: the snapshot would store a MEMBERSHIP entry as last/prev; wait for two more applies
        if self._node._store.applied_index < self.raftLastApplied:
            # The last applied entries are pysyncobj's own (an election no-op, a membership change), which never
            # reach the store: a snapshot now would say "store at N-1, raft at N" and every follower would refuse
            # it. Wait for the next command, which brings the store level again.
            return
        SyncObj._SyncObj__tryLogCompaction(self)

    def _membership_at_compaction_point(self) -> bool:
        entries = self._SyncObj__getEntries(self.raftLastApplied - 1, 2)
        return any(entry[0][:1] == _membership_command_type for entry in entries)


class RaftNode:
    """One voting member. Construct it on any thread; it ticks on its own daemon thread until `close()`.

    `store` is the Backend the state machine applies into; the caller opens and closes it. `api_addrs` maps
    raft addresses to API addresses, for NotLeader. `on_fatal(error)` is called once, on the tick thread,
    when the node stops because the store or the journal failed.
    """

    def __init__(
        self,
        self_addr: str,
        partner_addrs: Iterable[str],
        cluster_key: bytes,
        store,
        journal_path: str,
        *,
        api_addrs: Mapping[str, str] | None = None,
        timing: RaftTiming = RaftTiming(),
        on_fatal: Callable[[BaseException], None] | None = None,
        snapshot_path: str | None = None,
        compaction_min_entries: int = COMPACTION_MIN_ENTRIES,
        compaction_min_seconds: float = COMPACTION_MIN_SECONDS,
    ) -> None:
        if not isinstance(cluster_key, bytes) or len(cluster_key) != key_bytes:
            raise ValueError(f"raft refuses to start without a {key_bytes * 8}-bit cluster key")
        host, _, port = self_addr.rpartition(":")
        if host in _wildcard_hosts or not port.isdigit():
            raise ValueError(f"raft must bind its own address host:port, not {self_addr!r}")
        partners = [addr for addr in partner_addrs if addr != self_addr]
        self._self_addr = self_addr
        self.bind_host = host  # outgoing raft connections leave from this address, so partitions can cut them
        # raft address -> API address, for NotLeader; the owner may add entries (a node that joined) at any time
        self.api_addrs: dict[str, str] = dict(api_addrs or {})
        self._tick_tasks: queue.SimpleQueue = queue.SimpleQueue()  # callables run on the tick thread
        self._on_fatal = on_fatal
        self._store = store
        self._state_machine = StateMachine(store)
        self._journal: DurableJournal | None = None
        self._journal_path = journal_path
        self._fatal: BaseException | None = None
        self._pending: set[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = set()
        self._pending_lock = threading.Lock()
        self._stop = threading.Event()
        self._snapshot_path = snapshot_path if snapshot_path is not None else journal_path + ".snapshot"
        self._snapshot_failure: BaseException | None = None
        # Membership changes: one asyncio lock per event loop orders callers; `_membership_idle` is clear from a
        # proposal until pysyncobj's callback for it (or the node stopping), whatever the caller's timeout.
        self._membership_locks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._membership_idle = threading.Event()
        self._membership_idle.set()
        self._recover_snapshot_file()
        self._snapshots = BackgroundSnapshots(self._snapshot_path, store, self._link_good)
        conf = SyncObjConf(
            password=cluster_key,
            bindAddress=self_addr,
            journalFile=journal_path,
            autoTick=False,
            autoTickPeriod=timing.tick_seconds,
            appendEntriesPeriod=timing.append_entries_seconds,
            raftMinTimeout=timing.election_min_seconds,
            raftMaxTimeout=timing.election_max_seconds,
            connectionTimeout=timing.connection_timeout_seconds,
            connectionRetryTime=timing.connection_retry_seconds,
            leaderFallbackTimeout=timing.leader_fallback_seconds,
            bindRetryTime=timing.bind_retry_seconds,
            maxBindRetries=timing.bind_attempts_max,
            commandsWaitLeader=False,
            dynamicMembershipChange=True,
            useFork=False,
            logCompactionMinEntries=compaction_min_entries,
            logCompactionMinTime=compaction_min_seconds,
            fullDumpFile=self._snapshot_path,
            serializer=self._snapshots.start,
            serializeChecker=self._snapshot_state,
            deserializer=self._load_snapshot,
            appendEntriesBatchSizeBytes=1 << 20,
        )
        self._tick_seconds = timing.tick_seconds
        self._replica = self._construct(partners, conf)
        self._replica.addOnTickCallback(self._flush_journal)
        self._wakeup = _Wakeup(self._replica._poller)
        self._thread = threading.Thread(target=self._tick_loop, name=f"raft-tick {self_addr}", daemon=True)
        self._thread.start()

    def _construct(self, partners: list[str], conf: SyncObjConf) -> _Replica:
        def create_journal(_journal_file):
            self._journal = DurableJournal(self._journal_path)
            return self._journal

        with _create_journal_lock:
            original = _pso_syncobj.createJournal
            _pso_syncobj.createJournal = create_journal
            try:
                replica = _Replica(self, self._self_addr, partners, conf)
            except BaseException:
                if self._journal is not None:
                    self._journal.close()
                raise
            finally:
                _pso_syncobj.createJournal = original
        if not isinstance(self._journal, DurableJournal):
            raise RuntimeError("pysyncobj did not build its journal through createJournal: hardening 2 is off")
        return replica

    # --- tick thread ------------------------------------------------------------------------------------------

    def _tick_loop(self) -> None:
        replica = self._replica
        while not self._stop.is_set():
            try:
                replica.doTick(self._tick_seconds)
            except (FatalApplyError, JournalError) as error:
                self._die(error)
                break
            except Exception:  # pysyncobj's own loop logs and retries a failing tick; so do we
                logger.exception("raft: tick failed on %s", self._self_addr)
                self._stop.wait(self._tick_seconds)
            self._run_tick_tasks()
            if self._snapshot_failure is not None:  # our own snapshot is unusable and the journal was cut
                self._die(self._snapshot_failure)
                break
        try:
            replica._doDestroy()  # transport down, journal flushed and closed
        except Exception:
            logger.exception("raft: shutdown of %s failed", self._self_addr)
        self._wakeup.close()

    def _run_tick_tasks(self) -> None:
        while True:
            try:
                task = self._tick_tasks.get_nowait()
            except queue.Empty:
                return
            try:
                task()
            except Exception:
                logger.exception("raft: a task on the tick thread failed")

    async def _on_tick_thread(self, function, timeout: float):
        """Run `function()` on the tick thread (pysyncobj is not thread-safe) and return its result."""
        self._check_running()
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def task() -> None:
            try:
                result, error = function(), None
            except Exception as failure:
                result, error = None, failure
            _post(loop, future, result, error)

        self._tick_tasks.put(task)
        self._wakeup.notify()
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise ProposalTimeout(f"the raft tick thread did not answer within {timeout} s") from None

    def _flush_journal(self) -> None:
        if self._fatal is None and self._journal is not None:
            self._journal.flush()  # a JournalFailed propagates out of doTick and stops the node

    # --- snapshots (tick thread; called by pysyncobj) -------------------------------------------------------

    @property
    def _good_snapshot_path(self) -> str:
        return self._snapshot_path + ".good"

    def _snapshot_state(self) -> int:
        """pysyncobj's serializeChecker: BackgroundSnapshots' answer in pysyncobj's terms."""
        return _serializer_states[self._snapshots.check()]

    def _load_snapshot(self, path: str):
        """pysyncobj's `deserializer(fullDumpFile)`: install our store's stream, return `(last, prev, cluster)`."""
        received = not _same_file(path, self._good_snapshot_path)
        if received:
            self._snapshots.installed_elsewhere()  # one of ours being written is now stale
        try:
            result = snapshot.load(path, self._store, self._state_machine)
        except Exception as error:
            logger.error("raft: snapshot %s refused on %s: %s", path, self._self_addr, error)
            if received and os.path.exists(self._good_snapshot_path):
                self._link(self._good_snapshot_path, path)  # keep serving our last good snapshot
            elif not received:
                self._snapshot_failure = error
            raise  # pysyncobj logs it and leaves its journal and raftLastApplied alone
        if received:
            self._link_good(path)
        position = result.position
        logger.info(
            "raft: snapshot at index %d loaded on %s (store at %d, %s)",
            position.last[1], self._self_addr, result.store_index, "restored" if result.restored else "kept",
        )
        return position.last, position.prev, {TCPNode(member) for member in position.members}

    def _link_good(self, path: str) -> None:
        self._link(path, self._good_snapshot_path)

    @staticmethod
    def _link(source: str, target: str) -> None:
        """Make `target` a durable hard link to `source`, atomically replacing it."""
        temporary = target + ".link"
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        os.link(source, temporary)
        os.replace(temporary, target)
        directory = os.open(os.path.dirname(os.path.abspath(target)), os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def _recover_snapshot_file(self) -> None:
        good = self._good_snapshot_path
        if os.path.exists(good) and not _same_file(self._snapshot_path, good):
            logger.warning("raft: %s is not the last good snapshot; putting %s back", self._snapshot_path, good)
            self._link(good, self._snapshot_path)

    def _apply_entry(self, index: int, data) -> ApplyResult:
        journal = self._journal
        first = journal[0][1]
        _, entry_index, term = journal[index - first]
        if entry_index != index:  # pysyncobj's bookkeeping changed under us: applying blind would diverge
            raise FatalApplyError(index, f"the journal holds index {entry_index} where {index} was expected")
        return self._state_machine.apply(index, term, data)

    def _die(self, error: BaseException) -> None:
        self._fatal = error
        self._stop.set()
        logger.critical("raft: node %s stops: %s", self._self_addr, error)
        self._fail_pending(error)
        if self._on_fatal is not None:
            try:
                self._on_fatal(error)
            except Exception:
                logger.exception("raft: on_fatal failed")

    def _fail_pending(self, error: BaseException) -> None:
        self._membership_idle.set()  # the node is stopped: nothing is in flight any more
        with self._pending_lock:
            pending, self._pending = self._pending, set()
        for loop, future in pending:
            _post(loop, future, None, error)

    # --- public API ---------------------------------------------------------------------------------------

    async def submit(self, command: Command, timeout: float) -> ApplyResult:
        """Propose `command` here, the leader, and return its ApplyResult once committed and applied here.

        Raises CommandRejected (unchanged retry is pointless), NotLeader, QueueFull (retryable),
        ProposalTimeout (outcome unknown: retry with the same idempotency id), or the fatal error of a
        stopped node.
        """
        if self._fatal is not None:
            raise self._fatal
        if self._stop.is_set():
            raise RaftError("the raft node is closed")
        data = encode(command)
        if not self.is_leader():
            raise NotLeader(self.api_addrs.get(self.leader_addr()))
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        token = (loop, future)
        with self._pending_lock:
            self._pending.add(token)

        def on_result(result, error):  # tick thread (or this thread on QUEUE_FULL); must never raise
            with self._pending_lock:
                self._pending.discard(token)
            try:
                outcome = None if error == FAIL_REASON.SUCCESS else self._error_for(error)
                _post(loop, future, result, outcome)
            except Exception:
                logger.exception("raft: could not deliver a proposal result")

        self._replica._apply_entry(data, callback=on_result)
        self._wakeup.notify()
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            # The outcome may still arrive (NotLeader after an election): nobody awaits it any more.
            future.add_done_callback(_retrieve_outcome)
            raise ProposalTimeout(f"no result within {timeout} s; the outcome is unknown") from None
        finally:
            with self._pending_lock:
                self._pending.discard(token)

    def _error_for(self, code: int) -> RaftError:
        if code == FAIL_REASON.QUEUE_FULL:
            return QueueFull("the raft proposal queue is full")
        if code in (
            FAIL_REASON.MISSING_LEADER,
            FAIL_REASON.NOT_LEADER,
            FAIL_REASON.LEADER_CHANGED,
            FAIL_REASON.DISCARDED,
        ):
            return NotLeader(self.api_addrs.get(self.leader_addr()))
        if code == FAIL_REASON.REQUEST_DENIED:
            return CommandRejected("raft refused the request")
        return ProposalTimeout(f"raft reported outcome code {code}; the outcome is unknown")

    async def add_peer(self, raft_addr: str, timeout: float) -> None:
        """Add the voter `raft_addr` (started with the current members as partners); return once committed.

        Raises NotLeader, MembershipRejected (already a member, or the leader's no-op is not applied yet),
        QueueFull, ProposalTimeout (the outcome is unknown; the change stays in flight until it resolves), or the
        fatal error of a stopped node. `timeout` bounds the whole call, waiting for an earlier change included.
        """
        await self._change_membership("add", raft_addr, timeout)

    async def remove_peer(self, raft_addr: str, timeout: float) -> None:
        """Remove the voter `raft_addr` (not this node); return once committed. Errors as for add_peer."""
        await self._change_membership("remove", raft_addr, timeout)

    async def _change_membership(self, kind: str, raft_addr: str, timeout: float) -> None:
        host, _, port = raft_addr.rpartition(":")
        if host in _wildcard_hosts or not port.isdigit():
            raise ValueError(f"a raft peer address must be host:port, not {raft_addr!r}")
        self._check_running()
        if not self.is_leader():
            raise NotLeader(self.api_addrs.get(self.leader_addr()))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        lock = self._membership_locks.get(loop)
        if lock is None:
            lock = self._membership_locks[loop] = asyncio.Lock()
        try:
            await asyncio.wait_for(lock.acquire(), timeout)
        except TimeoutError:
            raise ProposalTimeout(f"another membership change held the lock for {timeout} s") from None
        try:
            while not self._membership_idle.is_set():  # an earlier change whose caller timed out
                self._check_running()
                if loop.time() >= deadline:
                    raise ProposalTimeout("an earlier membership change is still in flight")
                await asyncio.sleep(self._tick_seconds)
            self._check_running()
            if not self.is_leader():
                raise NotLeader(self.api_addrs.get(self.leader_addr()))
            members = {member["address"] for member in self.configuration()}
            if kind == "add" and raft_addr in members:
                raise MembershipRejected(f"{raft_addr} is already a member")
            if kind == "remove" and raft_addr == self._self_addr:
                raise MembershipRejected("a node cannot remove itself; transfer leadership first")
            if kind == "remove" and raft_addr not in members:
                raise MembershipRejected(f"{raft_addr} is not a member")
            future = loop.create_future()
            token = (loop, future)
            with self._pending_lock:
                self._pending.add(token)

            def on_result(result, error):  # tick thread (or this thread on QUEUE_FULL); must never raise
                self._membership_idle.set()
                with self._pending_lock:
                    self._pending.discard(token)
                try:
                    if error == FAIL_REASON.SUCCESS:
                        outcome = None
                    elif error == FAIL_REASON.REQUEST_DENIED:
                        outcome = MembershipRejected(
                            f"raft refused to {kind} {raft_addr} (a member already/not, or the leader's no-op "
                            "is not applied yet)"
                        )
                    else:
                        outcome = self._error_for(error)
                    _post(loop, future, result, outcome)
                except Exception:
                    logger.exception("raft: could not deliver a membership change result")

            self._membership_idle.clear()
            logger.info("raft: proposing to %s peer %s on %s", kind, raft_addr, self._self_addr)
            try:
                if kind == "add":
                    self._replica.addNodeToCluster(raft_addr, callback=on_result)
                else:
                    self._replica.removeNodeFromCluster(raft_addr, callback=on_result)
                self._wakeup.notify()
            except BaseException:
                self._membership_idle.set()
                with self._pending_lock:
                    self._pending.discard(token)
                raise
            try:
                await asyncio.wait_for(asyncio.shield(future), max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise ProposalTimeout(
                    f"the change to {kind} {raft_addr} is not committed within {timeout} s; the outcome is unknown"
                ) from None
            finally:
                with self._pending_lock:
                    self._pending.discard(token)
            logger.info("raft: peer %s %s on %s", raft_addr, "added" if kind == "add" else "removed", self._self_addr)
        finally:
            lock.release()

    def _check_running(self) -> None:
        if self._fatal is not None:
            raise self._fatal
        if self._stop.is_set():
            raise RaftError("the raft node is closed")

    def configuration(self) -> list[dict]:
        """The servers as this node sees them, like Vault's sys/storage/raft/configuration `servers`.

        Each is `{node_id, address, leader, voter, protocol_version}`; the node id is the raft address (pysyncobj's
        identity). `leader` marks the last known leader, so a follower's view may be stale.
        """
        leader = self.leader_addr()
        addrs = sorted({self._self_addr} | {member.id for member in self._replica.otherNodes})
        return [
            {"node_id": addr, "address": addr, "leader": addr == leader, "voter": True, "protocol_version": "3"}
            for addr in addrs
        ]

    async def step_down(self, timeout: float, target: str | None = None) -> str | None:
        """Hand leadership to `target` (a raft address) or else the most caught-up connected follower (Raft's
        TimeoutNow; reference §7.2).

        Returns the new leader's raft address once this node has stopped leading, or None if none is known yet.
        pysyncobj refuses a target that is not fully caught up, so the transfer is retried each few ticks until
        `timeout`. Raises NotLeader here not leading, ProposalTimeout if no follower took over in time.
        """
        self._check_running()
        if not self.is_leader():
            raise NotLeader(self.api_addrs.get(self.leader_addr()))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        resend_at = loop.time()
        while self.is_leader():
            if loop.time() >= resend_at:  # refused (no follower caught up yet) or sent but not acted on
                transfer = functools.partial(self._transfer_leadership, target)
                sent = await self._on_tick_thread(transfer, timeout) == FAIL_REASON.SUCCESS
                resend_at = loop.time() + (step_down_resend_seconds if sent else self._tick_seconds * 10)
            if loop.time() >= deadline:
                raise ProposalTimeout(f"no follower took over leadership within {timeout} s")
            await asyncio.sleep(self._tick_seconds)
        return self.leader_addr()

    def _transfer_leadership(self, target: str | None) -> int:
        if not self._replica._isLeader():
            raise NotLeader(self.api_addrs.get(self.leader_addr()))
        outcome = []
        self._replica.transferLeadership(target, callback=lambda _result, code: outcome.append(code))
        return outcome[0] if outcome else FAIL_REASON.REQUEST_DENIED

    async def status(self, timeout: float = 2.0) -> dict:
        """Raft's view from this node: term, indexes, leader and, on the leader, each peer's match index,
        connection and seconds since its last answer (autopilot/state)."""
        return await self._on_tick_thread(self._read_status, timeout)

    def _read_status(self) -> dict:
        replica = self._replica
        now = time.monotonic()  # pysyncobj's monotonicTime
        match = replica._SyncObj__raftMatchIndex
        answered = replica._SyncObj__lastResponseTime
        connected = replica._SyncObj__connectedNodes
        peers = {
            node.id: {
                "match_index": match.get(node, 0),
                "connected": node in connected,
                "last_contact_seconds": (now - answered[node]) if node in answered else None,
            }
            for node in replica.otherNodes
        }
        return {
            "term": replica.raftCurrentTerm, "commit_index": replica.raftCommitIndex,
            "applied_index": self.applied_index, "last_index": replica._SyncObj__getCurrentLogIndex(),
            "leader": self.leader_addr(), "is_leader": replica._isLeader(), "peers": peers,
        }

    @property
    def term(self) -> int:
        return self._replica.raftCurrentTerm

    def settled_term(self) -> int | None:
        """This node's term if it leads and has applied its own term's first entry (the no-op pysyncobj appends
        on election, syncobj.py:1230), so that every entry committed in earlier terms is applied here; else None."""
        replica = self._replica
        term, noop = replica.raftCurrentTerm, replica._SyncObj__noopIDx
        if not self.is_leader() or noop is None or replica.raftLastApplied < noop:
            return None
        return term if replica.raftCurrentTerm == term else None

    def is_leader(self) -> bool:
        """This node's own belief; pysyncobj can briefly have two leaders. A routing hint, not a read lease."""
        return self._fatal is None and not self._stop.is_set() and self._replica._isLeader()

    def leader_addr(self) -> str | None:
        """The raft address of the last known leader, or None."""
        leader = self._replica._getLeader()
        return None if leader is None else leader.id

    @property
    def applied_index(self) -> int:
        """Every entry up to this raft index is reflected in the store."""
        return max(self._store.applied_index, self._replica.raftLastApplied)

    @property
    def journal_length(self) -> int:
        """Entries in the Raft journal (drops after a log compaction)."""
        return len(self._journal)

    @property
    def snapshot_path(self) -> str:
        return self._snapshot_path

    @property
    def commit_index(self) -> int:
        return self._replica.raftCommitIndex

    @property
    def fatal_error(self) -> BaseException | None:
        return self._fatal

    @property
    def state_machine(self) -> StateMachine:
        return self._state_machine

    def close(self) -> None:
        """Stop ticking, close the transport, flush and close the journal. Pending submits get ProposalTimeout.

        Idempotent. Does not close the store, which the caller owns.
        """
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        self._snapshots.close(snapshot_close_wait_seconds)
        self._fail_pending(ProposalTimeout("the raft node closed; the outcome is unknown"))


class MembershipRejected(CommandRejected):
    """A membership change refused as proposed (see RaftNode.add_peer); nothing changed."""


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _retrieve_outcome(future: asyncio.Future) -> None:
    """Mark a late outcome as seen, so that asyncio does not log 'Future exception was never retrieved'."""
    if not future.cancelled():
        future.exception()


def _post(loop: asyncio.AbstractEventLoop, future: asyncio.Future, result, error) -> None:
    def resolve() -> None:
        if future.done():
            return
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)

    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
        loop.call_soon_threadsafe(resolve)
