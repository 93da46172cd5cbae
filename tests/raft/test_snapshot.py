"""Raft snapshots are our store's export stream (DESIGN.md §Raft hardening 5): raft/snapshot.py and its wiring.

Real three-node pysyncobj clusters on loopback (helpers from test_node.py) with a small compaction threshold:
the journal is cut, a stopped follower catches up through a snapshot install, a node that lost its store
restores from its own snapshot, the file holds our stream and no pickled pysyncobj object, and a corrupted
snapshot is refused with the old state kept.
"""

import collections
import io
import os
import pickle
import threading
import time

import msgpack
import pytest

from raft import snapshot
from raft.node import RaftNode
from storage import LogStore, MemoryBackend, SnapshotError
from storage.snapshot import StreamReader

from .test_node import FAST, KEY, Cluster, put, submit, wait_for

pytestmark = pytest.mark.timeout(30)

THRESHOLD = 20


class SnapshotCluster(Cluster):
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
            KEY,
            self.stores[i],
            self.journal(i),
            timing=FAST,
            compaction_min_entries=THRESHOLD,
        )
        return self.nodes[i]


@pytest.fixture
def cluster(tmp_path):
    made = []

    def make(**kwargs) -> SnapshotCluster:
        made.append(SnapshotCluster(tmp_path, **kwargs))
        return made[-1]

    yield make
    for each in made:
        each.close()


@pytest.fixture
def loads(monkeypatch):
    """Every call of raft.snapshot.load made by a node: (path, LoadResult or the exception)."""
    calls = []
    original = snapshot.load

    def spy(path, store, state_machine):
        try:
            result = original(path, store, state_machine)
        except Exception as error:
            calls.append((path, error))
            raise
        calls.append((path, result))
        return result

    monkeypatch.setattr(snapshot, "load", spy)
    return calls


def export(store) -> bytes:
    buffer = io.BytesIO()
    store.export_snapshot(buffer)
    return buffer.getvalue()


def write_many(c: SnapshotCluster, leader: int, first: int, count: int) -> None:
    for n in range(first, first + count):
        assert submit(c.nodes[leader], put(n, f"secret/k{n:04d}", b"v%d" % n)).ok


def same_stores(c: SnapshotCluster, i: int, j: int) -> bool:
    return export(c.stores[i]) == export(c.stores[j])


def test_compaction_cuts_the_journal_and_the_file_is_our_stream(cluster):
    c = cluster(log_store=True)
    leader = c.leader()
    write_many(c, leader, 1, 3 * THRESHOLD)
    for node in c.nodes:
        wait_for(lambda node=node: os.path.exists(node.snapshot_path), what="a snapshot on every node")
        wait_for(lambda node=node: node.journal_length <= THRESHOLD + 2, what="the journal to be cut")
    node = c.nodes[leader]
    with open(node.snapshot_path, "rb") as fileobj:
        data = fileobj.read()
        position, stream_bytes = snapshot.read_position(fileobj)
    assert os.path.samefile(node.snapshot_path, node.snapshot_path + ".good")
    # Our stream first: the store's own header, verifiable by the store; then msgpack position; then the footer.
    assert StreamReader(io.BytesIO(data[:stream_bytes])).index >= position.last[1]
    replica = MemoryBackend()
    replica.restore(io.BytesIO(data[:stream_bytes]))
    assert replica.get("secret/k0001") == b"v1"
    fields = msgpack.unpackb(data[stream_bytes : -snapshot.FOOTER.size], raw=False)
    assert sorted(fields) == ["last", "members", "prev", "v"]
    assert data[-snapshot.FOOTER.size :].startswith(b"VDRSNAP1")
    assert b"pysyncobj" not in data and b"TCPNode" not in data
    assert position.prev[1] + 1 == position.last[1] and position.last[1] > THRESHOLD
    assert sorted(position.members) == sorted(c.addrs)
    # The journal starts at the snapshot's previous entry, exactly as pysyncobj keeps it.
    assert node._journal[0][1] <= position.last[1]
    assert all(store.get("secret/k0001") == b"v1" for store in c.stores)


def test_a_stopped_follower_catches_up_through_a_snapshot_install(cluster, loads):
    c = cluster(log_store=True)
    leader = c.leader()
    write_many(c, leader, 1, 3)
    follower = next(i for i in range(3) if i != leader)
    wait_for(lambda: c.stores[follower].get("secret/k0003") == b"v3", what="the follower to have the first writes")
    c.stop(follower, close_store=True)
    write_many(c, leader, 4, 3 * THRESHOLD)
    leader_node = c.nodes[leader]
    wait_for(lambda: leader_node.journal_length <= THRESHOLD + 2, what="the leader's journal to be cut")
    with open(leader_node.snapshot_path, "rb") as fileobj:
        cut_at = snapshot.read_position(fileobj)[0].last[1]

    c.start(follower)
    wait_for(lambda: same_stores(c, leader, follower), seconds=20, what="the follower's store to equal the leader's")
    installed = [result for path, result in loads if path == c.nodes[follower].snapshot_path]
    assert installed and isinstance(installed[-1], snapshot.LoadResult) and installed[-1].restored
    assert installed[-1].position.last[1] >= cut_at
    assert c.stores[follower].get("secret/k0001") == b"v1"  # written before it stopped
    assert c.stores[follower].get("secret/k0030") == b"v30"  # written while it was down, before the snapshot
    assert c.nodes[follower].journal_length <= THRESHOLD + 2
    # The follower keeps working after the install.
    assert submit(c.nodes[leader], put(999, "secret/after", b"later")).ok
    wait_for(lambda: c.stores[follower].get("secret/after") == b"later", what="a write after the install")
    wait_for(lambda: same_stores(c, leader, follower), what="identical stores again")


def test_a_node_that_lost_its_store_restores_from_its_own_snapshot(cluster, loads):
    c = cluster()  # MemoryBackend: closing the store loses it
    leader = c.leader()
    write_many(c, leader, 1, 2 * THRESHOLD)
    follower = next(i for i in range(3) if i != leader)
    wait_for(lambda: c.nodes[follower].journal_length <= THRESHOLD + 2, what="the follower's journal to be cut")
    c.stop(follower, close_store=True)
    c.start(follower)
    wait_for(lambda: same_stores(c, leader, follower), what="the restarted follower to equal the leader")
    own = [result for path, result in loads if path == c.nodes[follower].snapshot_path]
    assert isinstance(own[0], snapshot.LoadResult) and own[0].restored
    assert c.stores[follower].get("secret/k0001") == b"v1"


def test_a_corrupted_snapshot_from_the_leader_is_refused_and_the_old_state_stays(cluster, loads):
    c = cluster(log_store=True)
    leader = c.leader()
    write_many(c, leader, 1, 3)
    follower = next(i for i in range(3) if i != leader)
    wait_for(lambda: c.stores[follower].get("secret/k0003") == b"v3", what="the first writes on the follower")
    c.stop(follower, close_store=True)
    write_many(c, leader, 4, 3 * THRESHOLD)
    leader_node = c.nodes[leader]
    wait_for(lambda: leader_node.journal_length <= THRESHOLD + 2, what="the leader's journal to be cut")
    with open(leader_node.snapshot_path, "r+b") as fileobj:  # flip one byte inside a value of the stream
        fileobj.seek(200)
        byte = fileobj.read(1)
        fileobj.seek(200)
        fileobj.write(bytes([byte[0] ^ 0xFF]))

    c.start(follower)
    before = export(c.stores[follower])
    path = c.nodes[follower].snapshot_path
    wait_for(lambda: any(p == path and isinstance(r, SnapshotError) for p, r in loads), what="the refusal")
    assert export(c.stores[follower]) == before
    assert c.stores[follower].get("secret/k0003") == b"v3" and c.stores[follower].get("secret/k0030") is None
    assert c.nodes[follower].fatal_error is None
    assert not any(p == path and isinstance(r, snapshot.LoadResult) for p, r in loads)


# --- raft/snapshot.py on its own ----------------------------------------------------------------------------


def _store_with(count: int, index: int) -> MemoryBackend:
    store = MemoryBackend()
    store.apply(index, [("put", f"k{n:03d}", b"v" * 40 + b"%d" % n) for n in range(count)], term=2)
    return store


class _NullStateMachine:
    reloads = 0

    def reload(self):
        self.reloads += 1


def _position(index: int) -> snapshot.RaftPosition:
    # what pysyncobj journals for _apply_entry(b"data"): protocol 2, bytes as _codecs.encode(str, "latin1")
    command = b"\x00" + pickle.dumps((0, (b"data\x80",)), 2)
    return snapshot.RaftPosition((command, index, 2), (b"\x01", index - 1, 2), ("127.0.0.1:1", "127.0.0.1:2"))


def test_load_restores_a_store_that_is_behind_and_leaves_one_that_is_ahead(tmp_path):
    path = str(tmp_path / "snap")
    source = _store_with(50, 9)
    assert snapshot.write(path, source, _position(9)) == 50
    target, machine = _store_with(3, 4), _NullStateMachine()
    result = snapshot.load(path, target, machine)
    assert result.restored and result.store_index == 9 and machine.reloads == 1
    assert result.position == _position(9)
    assert export(target) == export(source)
    ahead = _store_with(1, 12)
    assert not snapshot.load(path, ahead, machine).restored and ahead.get("k000") is not None
    assert machine.reloads == 1


@pytest.mark.parametrize("where", ["stream", "position", "footer", "truncated"])
def test_a_corrupted_snapshot_raises_and_the_store_keeps_its_state(tmp_path, where):
    path = str(tmp_path / "snap")
    snapshot.write(path, _store_with(50, 9), _position(9))
    with open(path, "rb") as fileobj:
        data = bytearray(fileobj.read())
        stream_bytes = snapshot.read_position(fileobj)[1]
    if where == "truncated":
        data = data[: stream_bytes // 2] + data[stream_bytes:]
    else:
        offset = {"stream": stream_bytes // 2, "position": stream_bytes + 5, "footer": len(data) - 3}[where]
        data[offset] ^= 0x55
    with open(path, "wb") as fileobj:
        fileobj.write(bytes(data))
    target, machine = _store_with(3, 4), _NullStateMachine()
    before = export(target)
    with pytest.raises(SnapshotError):
        snapshot.load(path, target, machine)
    assert export(target) == before and machine.reloads == 0


def test_an_entry_whose_pickle_would_build_an_object_is_refused(tmp_path):
    smuggled = b"\x00" + pickle.dumps(collections.OrderedDict(a=1), 2)
    position = snapshot.RaftPosition((smuggled, 9, 2), (b"\x01", 8, 2), ())
    with pytest.raises(SnapshotError, match="build objects"):
        snapshot.write(str(tmp_path / "snap"), _store_with(1, 9), position)
    with pytest.raises(SnapshotError):
        snapshot.check_entry((b"\x02" + pickle.dumps(["add", "x"], 2), 3, 1))  # membership: never
    with pytest.raises(SnapshotError):
        snapshot.check_entry((b"\x00not a pickle", 3, 1))
    with pytest.raises(SnapshotError, match="GLOBAL os system"):
        snapshot.check_entry((b"\x00\x80\x02cos\nsystem\nX\x02\x00\x00\x00idq\x00\x85R.", 3, 1))
    assert snapshot.check_entry(_position(9).last) == _position(9).last


def test_a_corrupted_own_snapshot_at_start_stops_the_node(cluster, loads):
    c = cluster()  # MemoryBackend: the restarted node needs its snapshot, its journal was cut
    leader = c.leader()
    write_many(c, leader, 1, 2 * THRESHOLD)
    follower = next(i for i in range(3) if i != leader)
    wait_for(lambda: c.nodes[follower].journal_length <= THRESHOLD + 2, what="the follower's journal to be cut")
    path = c.nodes[follower].snapshot_path
    c.stop(follower, close_store=True)
    with open(path, "r+b") as fileobj:  # also corrupts .good: the same inode
        fileobj.seek(100)
        byte = fileobj.read(1)
        fileobj.seek(100)
        fileobj.write(bytes([byte[0] ^ 0xFF]))
    node = c.start(follower)
    wait_for(lambda: node.fatal_error is not None, what="the node to stop")
    assert isinstance(node.fatal_error, SnapshotError)
    assert c.stores[follower].get("secret/k0001") is None and not node.is_leader()


class _GatedStore(MemoryBackend):
    """A store whose snapshot export waits at a gate: a snapshot that takes as long as the test wants."""

    def __init__(self, gate: threading.Event, started: threading.Event):
        super().__init__()
        self.gate, self.started = gate, started

    def export_snapshot(self, fileobj):
        self.started.set()
        assert self.gate.wait(20), "the test never opened the gate"
        return super().export_snapshot(fileobj)


def test_a_snapshot_being_written_stops_neither_heartbeats_nor_commits(cluster):
    """A large store takes seconds to export. Written on the tick thread, that stopped the heartbeats and
    cost a leader election (`make bench-cluster`, 100,000 keys). The export now runs on a thread of its own:
    while it is held, the leader keeps its term and commits writes, and the journal is cut only once the
    snapshot file is in place."""
    gate, started = threading.Event(), threading.Event()
    c = cluster()
    for i in range(len(c.nodes)):  # the same nodes, restarted over gated stores
        c.stop(i)
        c.stores[i] = _GatedStore(gate, started)
        c.start(i)
    leader = c.leader()
    term = c.nodes[leader].term
    try:
        write_many(c, leader, 1, 2 * THRESHOLD)
        assert started.wait(10), "no snapshot was started"
        held_until = time.monotonic() + 4 * FAST.election_max_seconds
        written = 2 * THRESHOLD
        while time.monotonic() < held_until:  # exports held for several election timeouts
            written += 1
            assert submit(c.nodes[leader], put(written, f"secret/k{written:04d}", b"v"), timeout=2.0).ok
        assert c.nodes[leader].term == term and c.nodes[leader].is_leader()
        assert not os.path.exists(c.nodes[leader].snapshot_path)  # nothing renamed into place yet
        assert c.nodes[leader].journal_length > written  # so nothing was compacted away
    finally:
        gate.set()
    for node in c.nodes:  # no more writes: every node's snapshots settle, the last one in place
        wait_for(lambda node=node: _settled_snapshot(node) and node.journal_length <= written,
                 what="a snapshot in place and the journal cut on every node")


def _settled_snapshot(node: RaftNode) -> bool:
    path = node.snapshot_path
    try:
        return not os.path.exists(path + ".bg.tmp") and os.path.samefile(path, path + ".good")
    except FileNotFoundError:  # the first one not written yet
        return False
