"""The nemesis's pure parts: grudges (who refuses whom) and the seeded schedule.

Grudges are checked by their defining properties over many seeds (symmetric, halves split everyone with the
smaller side first, a majorities ring gives every node a majority and no two nodes the same one), and the
directed edges an iptables cut installs are exactly the refused pairs both ways. The schedule is a pure function
of the seed: the same seed gives the same windows, another seed another order, and the windows fit the time.
"""

import itertools
import random

import pytest

from jepsen_lite import nemesis, net

FIVE = ["n1", "n2", "n3", "n4", "n5"]
THREE = ["n1", "n2", "n3"]


def symmetric(grudge: dict) -> bool:
    return all(node in grudge[other] for node, refused in grudge.items() for other in refused)


def test_isolating_a_node_cuts_it_from_everyone_and_nothing_else():
    grudge = net.isolate("n2", FIVE)
    assert grudge["n2"] == {"n1", "n3", "n4", "n5"}
    assert all(grudge[node] == {"n2"} for node in FIVE if node != "n2")
    assert net.edges(grudge) == {pair for other in FIVE if other != "n2" for pair in (("n2", other), (other, "n2"))}
    assert net.components(grudge) == [["n1", "n3", "n4", "n5"], ["n2"]]


@pytest.mark.parametrize("nodes", [THREE, FIVE])
def test_random_halves_split_everyone_in_two_the_smaller_first(nodes):
    for seed in range(50):
        grudge = net.random_halves(nodes, random.Random(seed))
        assert symmetric(grudge)
        sides = net.components(grudge)
        half = len(nodes) // 2
        assert len(sides) == 2 and sorted(len(side) for side in sides) == [half, len(nodes) - half]
        assert sorted(itertools.chain(*sides)) == sorted(nodes)
    assert net.bisect(["a", "b", "c"]) == [["a"], ["b", "c"]]


def test_random_halves_follow_the_seed():
    assert net.random_halves(FIVE, random.Random(7)) == net.random_halves(FIVE, random.Random(7))
    assert len({str(sorted(net.components(net.random_halves(FIVE, random.Random(seed))))) for seed in range(30)}) > 3


def test_a_majorities_ring_gives_every_node_its_own_majority():
    for seed in range(50):
        grudge = net.majorities_ring(FIVE, random.Random(seed))
        assert symmetric(grudge)
        seen = {node: frozenset(set(FIVE) - refused) for node, refused in grudge.items()}
        assert all(node in view and len(view) == 3 for node, view in seen.items())
        assert len(set(seen.values())) == len(FIVE)  # no two nodes see the same majority


def test_a_majorities_ring_needs_five_nodes():
    with pytest.raises(ValueError, match="5 nodes"):
        net.majorities_ring(THREE, random.Random(1))


def test_a_leader_on_the_minority_side_is_the_fault_target():
    halves = net.complete_grudge([["n1"], ["n2", "n3"]])
    assert nemesis._in_minority(halves, "n1") == "n1"
    assert nemesis._in_minority(halves, "n2") is None
    assert nemesis._in_minority(halves, None) is None


def plan(seed: int, nodes=THREE, faults=None, seconds=140.0):
    faults = faults or nemesis.default_faults(len(nodes), clock_available=False)
    return nemesis.plan(seed, nodes, workload_seconds=seconds, warmup_seconds=10.0, fault_seconds=8.0,
                        recover_seconds=8.0, faults=faults)


def test_the_schedule_is_a_function_of_the_seed():
    assert plan(42) == plan(42)
    orders = {tuple(window.fault for window in plan(seed)) for seed in range(20)}
    assert len(orders) > 5


def test_the_windows_fit_the_workload_and_cover_every_fault_each_round():
    windows = plan(3)
    assert len(windows) == 8  # (140 - 10) // 16
    assert windows[0].start_seconds == 10.0
    assert [window.start_seconds for window in windows] == [10.0 + 16.0 * index for index in range(8)]
    assert windows[-1].start_seconds + 16.0 <= 140.0
    faults = nemesis.default_faults(3, clock_available=False)
    assert sorted(window.fault for window in windows[:len(faults)]) == sorted(faults)


def test_the_default_faults_follow_the_node_count_and_the_clock():
    three = nemesis.default_faults(3, clock_available=False)
    assert set(three) == {"partition-leader", "partition-halves", "kill-leader", "pause-leader"}
    assert set(nemesis.default_faults(5, clock_available=True)) == set(nemesis.ALL_FAULTS)


def test_five_node_faults_are_refused_on_three_nodes_and_unknown_faults_always():
    with pytest.raises(ValueError, match="5 nodes"):
        plan(1, faults=("kill-partition",))
    with pytest.raises(ValueError, match="unknown"):
        plan(1, faults=("flood",))


def test_seeded_choices_are_in_the_plan():
    windows = plan(5, nodes=FIVE, faults=("partition-halves", "partition-ring"), seconds=80.0)
    assert windows == plan(5, nodes=FIVE, faults=("partition-halves", "partition-ring"), seconds=80.0)
    for window in windows:
        grudge = {node: set(refused) for node, refused in window.choice["grudge"].items()}
        assert symmetric(grudge) and set(grudge) == set(FIVE)
