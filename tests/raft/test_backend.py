"""ReplicatedPhysical on three real RaftNodes on loopback (the cluster helpers of test_node.py).

Writes through the leader reach every store with increasing indexes and group-commit; a follower refuses
writes; a lost answer is retried with the same idempotency id and applied once; read barriers coalesce and
never answer below a write acknowledged before they were called; wait_for_index serves X-Vault-Index.
"""

import asyncio
import random
import threading

import pytest

from raft.backend import IndexNotReached, ReplicatedPhysical
from raft.errors import CommandRejected, NotLeader, ProposalTimeout
from raft.state_machine import APPLIED, REJECTED, ApplyResult
from tests.raft.test_node import NOW, Cluster, wait_for

pytestmark = pytest.mark.timeout(30)


class Recording:
    """Delegates to a RaftNode and records every command submitted; `gate` can hold noops before proposing."""

    def __init__(self, node):
        self.node = node
        self.commands = []
        self.gate: asyncio.Event | None = None
        self.lose_next_write_answer = False

    def __getattr__(self, name):
        return getattr(self.node, name)

    async def submit(self, command, timeout):
        self.commands.append(command)
        if command.kind == "noop" and self.gate is not None:
            await self.gate.wait()
        result = await self.node.submit(command, timeout)
        if command.kind == "write" and self.lose_next_write_answer:
            self.lose_next_write_answer = False
            raise ProposalTimeout("the answer was lost (test)")
        return result

    def count(self, kind: str) -> int:
        return sum(1 for command in self.commands if command.kind == kind)


@pytest.fixture
def three(tmp_path):
    c = Cluster(tmp_path)
    try:
        leader = c.leader()
        yield c, leader
    finally:
        c.close()


def physical(node, store, seed: int = 1) -> ReplicatedPhysical:
    return ReplicatedPhysical(node, store, random.Random(seed), lambda: NOW)


def on_every_store(c: Cluster, index: int) -> None:
    for store in c.stores:
        wait_for(lambda store=store: store.applied_index >= index, what="every store at the index")


def test_writes_through_the_leader_land_on_every_store_with_increasing_indexes(three):
    c, leader = three
    p = physical(c.nodes[leader], c.stores[leader])

    async def main():
        indexes = [await p.put(f"secret/{i}", b"v%d" % i) for i in range(5)]
        indexes.append(await p.delete("secret/0"))
        return indexes

    indexes = asyncio.run(main())
    assert indexes == sorted(set(indexes)) and indexes[0] >= 2
    on_every_store(c, indexes[-1])
    for store in c.stores:
        assert store.get("secret/0") is None
        assert [store.get(f"secret/{i}") for i in range(1, 5)] == [b"v1", b"v2", b"v3", b"v4"]


def test_concurrent_writes_are_grouped_into_fewer_commands(three):
    c, leader = three
    node = Recording(c.nodes[leader])
    p = physical(node, c.stores[leader])

    async def main():
        return await asyncio.gather(*(p.put(f"k/{i}", b"%d" % i) for i in range(50)))

    indexes = asyncio.run(main())
    assert 1 <= node.count("write") < 50 and p.proposals == node.count("write")
    on_every_store(c, max(indexes))
    for store in c.stores:
        assert all(store.get(f"k/{i}") == b"%d" % i for i in range(50))


def test_a_write_on_a_follower_raises_not_leader_naming_the_leader(three):
    c, leader = three
    follower = (leader + 1) % 3
    wait_for(lambda: c.nodes[follower].leader_addr() == c.addrs[leader], what="the follower knows the leader")
    p = physical(c.nodes[follower], c.stores[follower])
    with pytest.raises(NotLeader) as raised:
        asyncio.run(p.put("secret/a", b"v"))
    assert raised.value.leader_api_addr == f"http://api-{c.addrs[leader]}"
    assert c.stores[follower].get("secret/a") is None


def test_a_lost_answer_is_retried_with_the_same_id_and_applied_once(three):
    c, leader = three
    node = Recording(c.nodes[leader])
    node.lose_next_write_answer = True
    p = physical(node, c.stores[leader])

    async def main():
        first = await p.put("secret/once", b"v")
        second = await p.put("secret/after", b"w")
        return first, second

    first, second = asyncio.run(main())
    writes = [command for command in node.commands if command.kind == "write"]
    assert len(writes) == 3 and writes[0] == writes[1] and writes[2].idempotency_id != writes[0].idempotency_id
    # the retry was answered from the idempotency table: the first entry's index, and no second apply
    assert c.nodes[leader].state_machine.lookup(writes[0].idempotency_id).raft_index == first
    assert first < second
    on_every_store(c, second)


def test_a_transaction_is_atomic_on_every_node(three):
    c, leader = three
    follower = (leader + 1) % 3
    p = physical(c.nodes[leader], c.stores[leader])
    keys = [f"tx/{i}" for i in range(20)]
    seen_partial = []
    stop = threading.Event()

    def watch(store):  # the first key visible means every later-read key must be visible too
        while not stop.is_set():
            if store.get(keys[0]) is not None:
                present = [store.get(key) is not None for key in keys[1:]]
                if not all(present):
                    seen_partial.append(present)
                return

    watcher = threading.Thread(target=watch, args=(c.stores[follower],), daemon=True)
    watcher.start()
    index = asyncio.run(p.transaction([("put", key, b"x") for key in keys] + [("delete", "tx/absent", None)]))
    on_every_store(c, index)
    stop.set()
    watcher.join(5)
    assert not seen_partial
    for store in c.stores:
        assert all(store.get(key) == b"x" for key in keys)


def test_a_bad_transaction_fails_alone_and_does_not_poison_its_group(three):
    c, leader = three
    p = physical(c.nodes[leader], c.stores[leader])

    async def main():
        return await asyncio.gather(
            p.put("ok/1", b"1"),
            p.put("_raft/idempotency/forged", b"x"),
            p.transaction([("put", "ok/2", "not bytes")]),
            p.transaction([]),
            p.put("ok/3", b"3"),
            return_exceptions=True,
        )

    one, reserved, not_bytes, empty, three_ = asyncio.run(main())
    assert isinstance(reserved, CommandRejected) and isinstance(not_bytes, CommandRejected)
    assert isinstance(empty, CommandRejected)
    assert isinstance(one, int) and isinstance(three_, int)
    on_every_store(c, three_)
    for store in c.stores:
        assert store.get("ok/1") == b"1" and store.get("ok/3") == b"3" and store.get("ok/2") is None
        assert store.get("_raft/idempotency/forged") is None


def test_concurrent_read_barriers_share_a_noop_and_cover_every_acknowledged_write(three):
    c, leader = three
    node = Recording(c.nodes[leader])
    p = physical(node, c.stores[leader])
    acked = [0]

    async def writer(i):
        index = await p.put(f"w/{i}", b"v")
        acked[0] = max(acked[0], index)

    async def reader():
        floor = acked[0]  # every write acknowledged before the read was called
        index = await p.read_barrier()
        assert index >= floor
        assert c.stores[leader].applied_index >= index
        return index

    async def main():
        await writer(-1)
        burst = await asyncio.gather(*(reader() for _ in range(40)))
        assert len(set(burst)) == 1 and burst[0] > acked[0] - 1  # one shared noop for the whole burst
        assert node.count("noop") == 1
        tasks = []
        for i in range(30):
            tasks.append(asyncio.create_task(writer(i)))
            tasks.append(asyncio.create_task(reader()))
            await asyncio.sleep(0.002)
        await asyncio.gather(*tasks)
        return node.count("noop")

    noops = asyncio.run(main())
    assert 1 <= noops < 31


def test_a_read_arriving_during_a_barrier_waits_for_the_next_one(three):
    c, leader = three
    node = Recording(c.nodes[leader])
    p = physical(node, c.stores[leader])

    async def main():
        node.gate = asyncio.Event()
        first = asyncio.create_task(p.read_barrier())
        await wait_until(lambda: node.count("noop") == 1)  # the first barrier is in flight, held at the gate
        written = await p.put("secret/late", b"v")
        second = asyncio.create_task(p.read_barrier())
        await asyncio.sleep(0.05)
        assert node.count("noop") == 1 and not second.done()  # it did not join the barrier in flight
        node.gate.set()
        a, b = await asyncio.wait_for(asyncio.gather(first, second), 10)
        assert node.count("noop") == 2
        assert b > a and b > written

    asyncio.run(main())


def test_a_barrier_on_a_follower_raises_not_leader(three):
    c, leader = three
    follower = (leader + 2) % 3
    wait_for(lambda: c.nodes[follower].leader_addr() is not None, what="the follower knows the leader")
    p = physical(c.nodes[follower], c.stores[follower])

    async def main():
        return await asyncio.gather(p.read_barrier(), p.read_barrier(), return_exceptions=True)

    results = asyncio.run(main())
    assert all(isinstance(result, NotLeader) for result in results)


def test_wait_for_index_on_a_follower(three):
    c, leader = three
    follower = (leader + 1) % 3
    primary = physical(c.nodes[leader], c.stores[leader])
    standby = physical(c.nodes[follower], c.stores[follower], seed=2)

    async def main():
        index = await primary.put("secret/fresh", b"v")
        applied = await standby.wait_for_index(index, 10)
        assert applied >= index and await standby.get("secret/fresh") == b"v"
        assert await standby.list("secret/") == ["fresh"]
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(IndexNotReached) as raised:
            await standby.wait_for_index(index + 1000, 0.2)
        assert 0.15 <= loop.time() - started < 2
        assert raised.value.index == index + 1000 and raised.value.applied_index < index + 1000

    asyncio.run(main())


async def wait_until(predicate, seconds: float = 10.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.005)


class Scripted:
    """A stand-in node that answers submits from a script: ApplyResults to return or errors to raise."""

    def __init__(self, answers, leader_after=None, terms=None):
        self.answers = list(answers)
        self.terms = list(terms or [1])  # the term seen by each read of `term`; the last one repeats
        self.commands = []
        self.leader_after = leader_after  # is_leader() turns True after this many calls; None: never
        self.leader_calls = 0
        self.applied = {}
        self.state_machine = self

    def lookup(self, idempotency_id):
        return self.applied.get(idempotency_id)

    @property
    def term(self):
        return self.terms.pop(0) if len(self.terms) > 1 else self.terms[0]

    def is_leader(self):
        self.leader_calls += 1
        return self.leader_after is not None and self.leader_calls > self.leader_after

    async def submit(self, command, timeout):
        self.commands.append(command)
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


def scripted_physical(node) -> ReplicatedPhysical:
    return ReplicatedPhysical(node, None, random.Random(3), lambda: NOW, proposal_timeout=0.1)


def test_not_leader_during_an_election_is_never_retried_even_if_this_node_leads_again():
    # Its ops were computed from the old term's state: a later term may hold writes it did not see.
    node = Scripted([NotLeader(None), ApplyResult(7, APPLIED)], leader_after=0)
    with pytest.raises(NotLeader):
        asyncio.run(scripted_physical(node).put("a", b"1"))
    assert len(node.commands) == 1


def test_a_timeout_is_retried_in_the_same_term_only():
    node = Scripted([ProposalTimeout("t1"), ApplyResult(7, APPLIED)], leader_after=0)
    assert asyncio.run(scripted_physical(node).put("a", b"1")) == 7
    assert len(node.commands) == 2 and node.commands[0] == node.commands[1]
    moved_on = Scripted([ProposalTimeout("t1"), ApplyResult(7, APPLIED)], leader_after=0, terms=[1, 2])
    with pytest.raises(ProposalTimeout):
        asyncio.run(scripted_physical(moved_on).put("a", b"1"))
    assert len(moved_on.commands) == 1


def test_not_leader_with_a_known_leader_is_not_retried():
    node = Scripted([NotLeader("http://leader")], leader_after=0)
    with pytest.raises(NotLeader):
        asyncio.run(scripted_physical(node).put("a", b"1"))
    assert len(node.commands) == 1


def test_an_election_this_node_does_not_win_propagates_not_leader_within_the_bound():
    node = Scripted([NotLeader(None)], leader_after=None)
    with pytest.raises(NotLeader):
        asyncio.run(asyncio.wait_for(scripted_physical(node).put("a", b"1"), 2))
    assert len(node.commands) == 1


def test_two_timeouts_propagate_unless_the_idempotency_table_knows_the_outcome():
    node = Scripted([ProposalTimeout("t1"), ProposalTimeout("t2")], leader_after=0)
    with pytest.raises(ProposalTimeout):
        asyncio.run(scripted_physical(node).put("a", b"1"))
    assert len(node.commands) == 2 and node.commands[0] == node.commands[1]

    class AppliedMeanwhile(Scripted):
        async def submit(self, command, timeout):
            self.applied[command.idempotency_id] = ApplyResult(9, APPLIED)
            return await super().submit(command, timeout)

    node = AppliedMeanwhile([ProposalTimeout("t1"), ProposalTimeout("t2")], leader_after=0)
    assert asyncio.run(scripted_physical(node).put("a", b"1")) == 9


def test_a_rejected_entry_raises_command_rejected_for_every_member_of_its_group():
    node = Scripted([ApplyResult(4, REJECTED, "invalid batch")])
    p = scripted_physical(node)

    async def main():
        return await asyncio.gather(p.put("a", b"1"), p.put("b", b"2"), return_exceptions=True)

    results = asyncio.run(main())
    assert len(node.commands) == 1 and len(node.commands[0].ops) == 2
    assert all(isinstance(result, CommandRejected) and result.reason == "invalid batch" for result in results)
