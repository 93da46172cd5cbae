"""RaftNode: real pysyncobj clusters on loopback, in one process, each node with its own store and journal.

Each hardening of raft/node.py has a test here that fails if a pysyncobj upgrade breaks it: the cluster key
(refused without one, a wrong key cannot join, a raw pickle frame runs nothing), the frame bound, the durable
journal (entries on disk, a restart keeps the data), and the async bridge (NotLeader on a follower).
"""

import asyncio
import contextlib
import pickle
import socket
import struct
import threading
import time
import zlib

import pytest

from raft.command import Command, encode
from raft.errors import FatalApplyError, NotLeader
from raft.journal import DurableJournal
from raft.node import RaftNode, RaftTiming, frame_bytes_max
from storage import LogStore, MemoryBackend, StoreFailed

pytestmark = pytest.mark.timeout(30)

KEY = bytes(range(32))
WRONG_KEY = bytes(range(1, 33))
NOW = 1_700_000_000.0
FAST = RaftTiming(
    tick_seconds=0.005,
    append_entries_seconds=0.02,
    election_min_seconds=0.2,
    election_max_seconds=0.4,
    connection_timeout_seconds=10.0,
    connection_retry_seconds=0.1,
    leader_fallback_seconds=1.0,
)


def free_addrs(count: int) -> list[str]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [f"127.0.0.1:{sock.getsockname()[1]}" for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def put(n: int, key: str, value: bytes) -> Command:
    return Command("write", [("put", key, value)], n.to_bytes(16, "big"), NOW)


def wait_for(predicate, seconds: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


class Cluster:
    def __init__(self, tmp_path, size: int = 3, keys: list[bytes] | None = None, log_store: bool = False):
        self.tmp_path = tmp_path
        self.addrs = free_addrs(size)
        self.keys = keys or [KEY] * size
        self.log_store = log_store
        self.stores: list = [None] * size
        self.nodes: list[RaftNode | None] = [None] * size
        for i in range(size):
            self.start(i)

    def journal(self, i: int) -> str:
        return str(self.tmp_path / f"journal{i}")

    def start(self, i: int) -> RaftNode:
        if self.stores[i] is None:
            if self.log_store:
                self.stores[i] = LogStore.open(str(self.tmp_path / f"store{i}"), background=False)
            else:
                self.stores[i] = MemoryBackend()
        others = [addr for addr in self.addrs if addr != self.addrs[i]]
        self.nodes[i] = RaftNode(
            self.addrs[i],
            others,
            self.keys[i],
            self.stores[i],
            self.journal(i),
            api_addrs={addr: f"http://api-{addr}" for addr in self.addrs},
            timing=FAST,
        )
        return self.nodes[i]

    def stop(self, i: int, close_store: bool = False) -> None:
        self.nodes[i].close()
        self.nodes[i] = None
        if close_store:
            self.stores[i].close()
            self.stores[i] = None

    def leader(self, among=None) -> int:
        among = range(len(self.nodes)) if among is None else among

        def find():
            leaders = [i for i in among if self.nodes[i] is not None and self.nodes[i].is_leader()]
            return leaders if len(leaders) == 1 else None

        return wait_for(find, what="one leader")[0]

    def close(self) -> None:
        for i, node in enumerate(self.nodes):
            if node is not None:
                node.close()
            if self.stores[i] is not None:
                self.stores[i].close()


@pytest.fixture
def cluster(tmp_path):
    made = []

    def make(**kwargs) -> Cluster:
        made.append(Cluster(tmp_path, **kwargs))
        return made[-1]

    yield make
    for each in made:
        each.close()


def submit(node: RaftNode, command: Command, timeout: float = 5.0):
    return asyncio.run(node.submit(command, timeout))


def test_a_write_is_applied_on_all_three_stores(cluster):
    c = cluster()
    leader = c.leader()
    result = submit(c.nodes[leader], put(1, "secret/a", b"v1"))
    assert result.ok and result.raft_index >= 2
    for store in c.stores:
        wait_for(lambda store=store: store.get("secret/a") == b"v1", what="the write on every store")
    for node in c.nodes:
        wait_for(lambda node=node: node.applied_index >= result.raft_index, what="applied index")
    assert c.nodes[leader].commit_index >= result.raft_index
    assert all(node.leader_addr() == c.addrs[leader] for node in c.nodes)


def test_a_retry_with_the_same_idempotency_id_applies_once(cluster):
    c = cluster()
    node = c.nodes[c.leader()]
    first = submit(node, put(7, "k", b"one"))
    again = submit(node, Command("write", [("put", "k", b"two")], (7).to_bytes(16, "big"), NOW))
    assert again == first
    assert c.stores[c.nodes.index(node)].get("k") == b"one"


def test_submit_to_a_follower_raises_not_leader_naming_the_leader(cluster):
    c = cluster()
    leader = c.leader()
    follower = next(i for i in range(3) if i != leader)
    wait_for(lambda: c.nodes[follower].leader_addr() == c.addrs[leader], what="the follower to know the leader")
    with pytest.raises(NotLeader) as raised:
        submit(c.nodes[follower], put(2, "k", b"v"))
    assert raised.value.leader_api_addr == f"http://api-{c.addrs[leader]}"
    assert raised.value.retryable
    assert c.stores[follower].get("k") is None


@pytest.mark.parametrize("key", [None, b"", b"short", bytes(31), bytes(33), "x" * 32])
def test_a_node_without_a_256_bit_key_is_refused(tmp_path, key):
    addr = free_addrs(1)[0]
    with pytest.raises(ValueError, match="256-bit cluster key"):
        RaftNode(addr, [], key, MemoryBackend(), str(tmp_path / "journal"))
    host, port = addr.rsplit(":", 1)
    with socket.socket() as sock:  # nothing was bound
        assert sock.connect_ex((host, int(port))) != 0


@pytest.mark.parametrize("addr", ["0.0.0.0:7000", ":7000", "[::]:7000", "127.0.0.1"])
def test_a_wildcard_or_portless_bind_address_is_refused(tmp_path, addr):
    with pytest.raises(ValueError, match="own address"):
        RaftNode(addr, [], KEY, MemoryBackend(), str(tmp_path / "journal"))


def test_a_member_with_the_wrong_key_never_receives_writes(cluster):
    c = cluster(keys=[KEY, KEY, WRONG_KEY])
    leader = c.leader(among=[0, 1])
    assert submit(c.nodes[leader], put(3, "secret/b", b"v")).ok
    other = 1 - leader
    wait_for(lambda: c.stores[other].get("secret/b") == b"v", what="the write on the good follower")
    time.sleep(0.5)
    assert c.stores[2].get("secret/b") is None
    assert c.nodes[2].applied_index <= 1
    assert not c.nodes[2].is_leader()
    assert c.nodes[2].leader_addr() is None


class _WriteMarker:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _pysyncobj_frame(payload: bytes) -> bytes:
    """A frame as pysyncobj's TcpConnection.send writes it without a password (tcp_connection.py:141-149)."""
    data = zlib.compress(payload, 3)
    return struct.pack("i", len(data)) + data


def _closed_by_peer(sock: socket.socket, seconds: float = 5.0) -> bool:
    sock.settimeout(seconds)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def test_a_raw_pickle_frame_runs_nothing(cluster, tmp_path):
    payload = pickle.dumps(_WriteMarker(str(tmp_path / "control")), protocol=2)
    pickle.loads(payload)  # the control: the payload is live, it creates a file when unpickled
    assert (tmp_path / "control").exists()

    c = cluster()
    c.leader()
    marker = tmp_path / "pwned"
    evil = pickle.dumps(_WriteMarker(str(marker)), protocol=2)
    for addr in c.addrs:
        host, port = addr.rsplit(":", 1)
        for messages in ([evil], [pickle.dumps(b"x" * 32, protocol=2), evil], [pickle.dumps(addr), evil]):
            with socket.create_connection((host, int(port)), timeout=5) as sock:
                for message in messages:
                    with contextlib.suppress(OSError):
                        sock.sendall(_pysyncobj_frame(message))
                assert _closed_by_peer(sock), "the node kept a connection that sent an unauthenticated frame"
    time.sleep(0.3)
    assert not marker.exists()
    # The cluster still works.
    assert submit(c.nodes[c.leader()], put(4, "after", b"ok")).ok


def test_an_oversized_frame_prefix_is_dropped_before_buffering(cluster):
    c = cluster(size=1)
    wait_for(c.nodes[0].is_leader, what="the single node to lead")
    host, port = c.addrs[0].rsplit(":", 1)
    for declared in (frame_bytes_max + 1, 0x7FFFFFFF, -1):
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            with contextlib.suppress(OSError):
                sock.sendall(struct.pack("i", declared) + b"\0" * 4096)
            assert _closed_by_peer(sock), f"a declared frame of {declared} bytes was accepted"


def _replicated_payload(entry: bytes) -> bytes | None:
    """The bytes our one @replicated method carries in a journal entry, or None for pysyncobj's own entries.

    An entry is one type byte (0 is a regular call) then pickle((funcID, args)) (syncobj.py:1583-1599); our own
    trusted file, so unpickling it here is fine.
    """
    if entry[:1] != b"\x00":
        return None
    _, args = pickle.loads(entry[1:])
    return args[0]


def test_the_journal_on_disk_holds_the_entries(cluster):
    c = cluster()
    leader = c.leader()
    commands = [put(10 + n, f"k{n}", b"v") for n in range(3)]
    for command in commands:
        assert submit(c.nodes[leader], command).ok
    for store in c.stores:
        wait_for(lambda store=store: store.get("k2") == b"v", what="the writes everywhere")
    for i in range(3):
        c.stop(i)
    for i in range(3):
        journal = DurableJournal(c.journal(i))
        try:
            assert len(journal) >= 1 + 1 + len(commands)  # pysyncobj's initial no-op, the leader's no-op, ours
            on_disk = [_replicated_payload(journal[n][0]) for n in range(len(journal))]
            assert [encode(command) for command in commands] == [data for data in on_disk if data is not None]
            assert [journal[n][1] for n in range(len(journal))] == list(range(1, len(journal) + 1))
            assert journal.getCurrentTerm() >= 1
        finally:
            journal.close()


def test_a_leader_restart_keeps_the_data(cluster):
    c = cluster(log_store=True)
    leader = c.leader()
    first = submit(c.nodes[leader], put(20, "secret/keep", b"v1"))
    assert first.ok
    for store in c.stores:
        wait_for(lambda store=store: store.get("secret/keep") == b"v1", what="the write everywhere")
    c.stop(leader, close_store=True)
    survivors = [i for i in range(3) if i != leader]
    new_leader = c.leader(among=survivors)
    assert submit(c.nodes[new_leader], put(21, "secret/later", b"v2")).ok

    c.start(leader)
    assert c.stores[leader].get("secret/keep") == b"v1"
    wait_for(lambda: c.stores[leader].get("secret/later") == b"v2", what="the restarted node to catch up")
    wait_for(lambda: c.nodes[leader].applied_index >= first.raft_index, what="the applied index")


def test_a_full_cluster_restart_keeps_the_data(cluster):
    c = cluster(log_store=True)
    result = submit(c.nodes[c.leader()], put(30, "secret/all", b"v"))
    assert result.ok
    for store in c.stores:
        wait_for(lambda store=store: store.get("secret/all") == b"v", what="the write everywhere")
    for i in range(3):
        c.stop(i, close_store=True)
    for i in range(3):
        c.start(i)
    leader = c.leader()
    assert all(store.get("secret/all") == b"v" for store in c.stores)
    again = submit(c.nodes[leader], put(31, "secret/next", b"w"))
    assert again.ok and again.raft_index > result.raft_index
    for store in c.stores:
        wait_for(lambda store=store: store.get("secret/next") == b"w", what="the next write everywhere")


def test_no_raft_message_leaves_a_node_before_its_journal_is_flushed(cluster, monkeypatch):
    """Every Raft message (a dict; handshakes are not) goes out with nothing pending in the sender's journal."""
    from pysyncobj.tcp_connection import TcpConnection

    nodes_by_thread: dict[str, RaftNode] = {}
    seen = {"raft": 0, "entries": 0}
    violations = []
    original = TcpConnection.send

    def checked_send(conn, message):
        node = nodes_by_thread.get(threading.current_thread().name)
        if node is not None and isinstance(message, dict):
            seen["raft"] += 1
            seen["entries"] += bool(message.get("entries"))
            if node._journal.pending_count:
                violations.append((message.get("type"), node._journal.pending_count))
        return original(conn, message)

    monkeypatch.setattr(TcpConnection, "send", checked_send)
    c = cluster()
    for node in c.nodes:
        nodes_by_thread[node._thread.name] = node
    leader = c.leader()
    for n in range(5):
        assert submit(c.nodes[leader], put(40 + n, f"f{n}", b"v")).ok
    for store in c.stores:
        wait_for(lambda store=store: store.get("f4") == b"v", what="the writes everywhere")
    assert seen["raft"] > 0 and seen["entries"] > 0
    assert violations == []


class _FailingStore(MemoryBackend):
    """A store whose disk fails on the key "boom"."""

    def apply(self, index, ops, term=0):
        ops = list(ops)
        if any(key == "boom" for _, key, _ in ops):
            raise StoreFailed("simulated fsync failure")
        super().apply(index, ops, term)


def test_a_store_failure_stops_the_node_loudly(tmp_path, caplog):
    addr = free_addrs(1)[0]
    stopped = []
    node = RaftNode(addr, [], KEY, _FailingStore(), str(tmp_path / "journal"), timing=FAST, on_fatal=stopped.append)
    try:
        wait_for(node.is_leader, what="the single node to lead")
        assert submit(node, put(50, "fine", b"v")).ok
        applied = node.applied_index
        with pytest.raises(FatalApplyError):
            submit(node, put(51, "boom", b"v"))
        assert len(stopped) == 1 and isinstance(stopped[0], FatalApplyError)
        assert node.fatal_error is stopped[0]
        assert any(record.levelname == "CRITICAL" for record in caplog.records)
        assert not node.is_leader()
        assert node.applied_index == applied  # the failed entry was not skipped
        with pytest.raises(FatalApplyError):
            submit(node, put(52, "later", b"v"))
        wait_for(lambda: not node._thread.is_alive(), what="the tick thread to stop")
    finally:
        node.close()


def test_a_follower_never_rewrites_its_journal_for_entries_it_already_holds(cluster, monkeypatch):
    """The leader re-sends unacknowledged entries with each new AppendEntries; without a conflict, no follower
    may truncate its journal (pysyncobj would, rewriting the journal with fsyncs, once per message)."""
    truncations = []
    original = DurableJournal.deleteEntriesFrom

    def counted(journal, from_position):
        truncations.append(from_position)
        return original(journal, from_position)

    monkeypatch.setattr(DurableJournal, "deleteEntriesFrom", counted)
    c = cluster()
    leader = c.nodes[c.leader()]

    async def many() -> list:
        return await asyncio.gather(*(leader.submit(put(100 + n, f"many/{n}", b"v"), 5.0) for n in range(60)))

    assert all(result.ok for result in asyncio.run(many()))
    for store in c.stores:
        wait_for(lambda store=store: store.get("many/59") == b"v", what="the writes everywhere")
    assert truncations == []
