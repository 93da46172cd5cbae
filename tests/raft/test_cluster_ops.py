"""RaftNode operations the server relies on, on real nodes: outgoing connections leave from the node's own
address (so a partition by address cuts them), a malformed entry in the log does not wedge the cluster,
leadership transfer (sys/step-down) and the status autopilot reports."""

import asyncio
import socket

import pytest
from pysyncobj.config import FAIL_REASON

from raft.command import encode
from raft.errors import NotLeader
from raft.node import RaftNode
from storage import MemoryBackend

from .test_node import FAST, KEY, put, submit, wait_for

pytestmark = pytest.mark.timeout(60)


def addrs_on_own_hosts() -> list[str]:
    found = []
    for host in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
        with socket.socket() as probe:
            probe.bind((host, 0))
            found.append(f"{host}:{probe.getsockname()[1]}")
    return found


@pytest.fixture
def nodes(tmp_path):
    addrs = addrs_on_own_hosts()
    started = [RaftNode(addr, addrs, KEY, MemoryBackend(), str(tmp_path / f"journal{n}"), timing=FAST)
               for n, addr in enumerate(addrs)]
    yield started
    for node in started:
        node.close()


def leader_of(nodes) -> RaftNode:
    return wait_for(lambda: ([node for node in nodes if node.is_leader()] or [None])[0], what="a leader")


def test_every_raft_connection_leaves_from_the_nodes_own_address(nodes):
    leader = leader_of(nodes)
    submit(leader, put(1, "a", b"1"))
    for node in nodes:
        host = node.bind_host
        connections = node._replica._SyncObj__transport._connections.values()
        sockets = [conn._TcpConnection__socket for conn in connections if conn._TcpConnection__socket is not None]
        assert sockets, "no connection to check"
        # Without the source binding the kernel would pick 127.0.0.1 for every outgoing connection.
        assert {sock.getsockname()[0] for sock in sockets} == {host}


def test_a_malformed_entry_is_refused_everywhere_and_the_cluster_keeps_committing(nodes):
    leader = leader_of(nodes)
    done = []
    leader._replica._apply_entry(b"\x01not msgpack at all", callback=lambda result, error: done.append(result))
    wait_for(lambda: done, what="the malformed entry's outcome")
    assert done[0].outcome == "rejected"
    submit(leader, put(2, "after", b"ok"))
    wait_for(lambda: all(node._store.get("after") == b"ok" for node in nodes), what="the next write everywhere")


def test_step_down_moves_leadership_and_status_reports_the_followers(nodes):
    leader = leader_of(nodes)
    submit(leader, put(3, "k", b"v"))
    status = asyncio.run(leader.status())
    assert status["is_leader"] and status["leader"] == next(n for n in nodes if n is leader)._self_addr
    assert set(status["peers"]) == {node._self_addr for node in nodes if node is not leader}
    wait_for(lambda: all(peer["match_index"] >= status["commit_index"] - 1
                         for peer in asyncio.run(leader.status())["peers"].values()), what="followers caught up")
    new_leader_addr = asyncio.run(leader.step_down(10.0))
    assert not leader.is_leader()
    assert new_leader_addr is None or new_leader_addr != leader._self_addr
    successor = leader_of(nodes)
    assert successor is not leader
    with pytest.raises(NotLeader):
        asyncio.run(leader.step_down(1.0))


def test_a_proposal_queued_on_a_follower_is_refused_never_forwarded_to_the_leader(nodes):
    """pysyncobj forwards a follower's queued proposal to the leader (syncobj.py:554-566); a command computed from
    an old term's state would then be applied after writes it never saw. Ours refuses it instead."""
    leader = leader_of(nodes)
    follower = next(node for node in nodes if node is not leader)
    outcome = []
    follower._replica._apply_entry(encode(put(9, "forwarded", b"x")), callback=lambda r, code: outcome.append(code))
    wait_for(lambda: outcome, what="the queued proposal's outcome")
    assert outcome == [FAIL_REASON.NOT_LEADER]
    submit(leader, put(10, "after", b"y"))
    wait_for(lambda: all(node._store.get("after") == b"y" for node in nodes), what="a later write everywhere")
    assert all(node._store.get("forwarded") is None for node in nodes)
