"""The fault schedule: planned from the seed alone, then run against the live cluster, every fault recorded.

`plan` is pure: the same seed, node count and fault set always give the same windows (which fault, when, and the
leader-independent choices such as which random halves, and the sign of a clock bump). After the warmup the
workload time is cut into windows of `fault_seconds` of fault then `recover_seconds` of healed recovery; the
faults come in rounds, each round every fault kind once in a seeded order. Who the leader is can only be known
when the window opens, so leader targets are resolved then (from the LeaderWatch).

The faults (jepsen.md §6.3):

    partition-leader   the leader alone | the others                     iptables grudge, verified
    partition-halves   random halves, the smaller first (3 nodes: 1 | 2)  iptables grudge, verified
    partition-ring     majorities ring: each node sees a different majority (5 nodes or more)
    kill-leader        kill -9 the leader; restart and unseal it when the window's fault time ends
    pause-leader       SIGSTOP the leader; SIGCONT when the fault time ends
    kill-partition     kill -9 one follower and cut the leader plus one follower from the rest: no side has a
                       majority (5 nodes or more)
    clock-bump         the leader's wall clock +-30 s with libfaketime (only when the library is present)

Each fault is one "start" nemesis record, written once the fault is in effect (a cut before its probes, so the
record is not late by the probe time), and one "stop" record once it is undone; the stop record carries the
election time seen by the LeaderWatch. A cut whose probes disagree raises NemesisIneffective: the run aborts.
"""

import dataclasses
import random
import threading
import time

from . import clock, net
from .errors import NemesisIneffective

ALL_FAULTS = ("partition-leader", "partition-halves", "partition-ring", "kill-leader", "pause-leader",
              "kill-partition", "clock-bump")
LEADER_FAULTS = ("partition-leader", "kill-leader", "pause-leader", "kill-partition", "clock-bump")
FIVE_NODE_FAULTS = ("partition-ring", "kill-partition")
leader_wait_seconds = 10.0  # a window whose leader cannot be found by then is skipped (and recorded)
leader_settled_seconds = 1.0  # a leader fault waits until the majority's belief has not changed for this long


@dataclasses.dataclass(frozen=True)
class Window:
    fault: str
    start_seconds: float  # from the start of the workload phase
    fault_seconds: float
    recover_seconds: float
    choice: dict  # the seeded, leader-independent part: {"components": [...]}, {"grudge": {...}}, {"sign": 1}


def default_faults(node_count: int, clock_available: bool) -> tuple[str, ...]:
    return tuple(fault for fault in ALL_FAULTS
                 if (node_count >= 5 or fault not in FIVE_NODE_FAULTS) and (clock_available or fault != "clock-bump"))


def plan(seed: int, node_ids: list[str], *, workload_seconds: float, warmup_seconds: float, fault_seconds: float,
         recover_seconds: float, faults: tuple[str, ...]) -> list[Window]:
    """The seeded windows that fit in `workload_seconds` after `warmup_seconds`."""
    unknown = sorted(set(faults) - set(ALL_FAULTS))
    if unknown or not faults:
        raise ValueError(f"unknown faults {unknown}; choose from {', '.join(ALL_FAULTS)}" if unknown else "no faults")
    if len(node_ids) < 5 and set(faults) & set(FIVE_NODE_FAULTS):
        raise ValueError(f"{', '.join(sorted(set(faults) & set(FIVE_NODE_FAULTS)))} need 5 nodes or more")
    rng = random.Random(seed)
    period = fault_seconds + recover_seconds
    count = max(0, int((workload_seconds - warmup_seconds) // period))
    order: list[str] = []
    while len(order) < count:
        round_ = list(faults)
        rng.shuffle(round_)
        order += round_
    windows = []
    for index, fault in enumerate(order[:count]):
        windows.append(Window(fault, warmup_seconds + index * period, fault_seconds, recover_seconds,
                              _choice(fault, node_ids, rng)))
    return windows


def _choice(fault: str, node_ids: list[str], rng: random.Random) -> dict:
    if fault == "partition-halves":
        return {"grudge": _sorted(net.random_halves(node_ids, rng))}
    if fault == "partition-ring":
        return {"grudge": _sorted(net.majorities_ring(node_ids, rng))}
    if fault == "kill-partition":
        return {"draw": rng.random()}  # picks the followers once the leader is known
    if fault == "clock-bump":
        return {"sign": rng.choice((-1, 1))}
    return {}


def _in_minority(grudge: dict, leader: str | None) -> str | None:
    """`leader` if the grudge leaves it on a side without a majority (it must lose leadership), else None."""
    if leader is None or leader not in grudge:
        return None
    sees = len(grudge) - len(grudge[leader])
    return leader if sees <= len(grudge) // 2 else None


def _sorted(grudge: dict[str, set[str]]) -> dict[str, list[str]]:
    return {node: sorted(refused) for node, refused in sorted(grudge.items())}


class Nemesis:
    """Runs the windows in a thread of its own. `error` holds what aborted it (NemesisIneffective, a node that
    would not restart); `aborted` is set then, and the runner stops the run."""

    def __init__(self, cluster, network, clock, history, watch, windows: list[Window], *, started_at: float):
        self.cluster, self.network, self.clock, self.history, self.watch = cluster, network, clock, history, watch
        self.windows = windows
        self.started_at = started_at  # time.monotonic() at the start of the workload phase
        self.stopping = threading.Event()
        self.aborted = threading.Event()
        self.error: BaseException | None = None
        self.report: list[dict] = []  # one entry per window: what happened
        self._thread = threading.Thread(target=self._run, name="nemesis", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_seconds: float) -> None:
        self.stopping.set()
        self._thread.join(timeout=timeout_seconds)

    def _run(self) -> None:
        try:
            for window in self.windows:
                if self._sleep_until(self.started_at + window.start_seconds):
                    return
                self.report.append(self._window(window))
        except BaseException as error:  # whatever stops the nemesis must stop the run
            self.error = error
            self.aborted.set()

    def _sleep_until(self, when: float) -> bool:
        """Sleep until `when` (monotonic); True if asked to stop meanwhile."""
        return self.stopping.wait(max(0.0, when - time.monotonic()))

    def _window(self, window: Window) -> dict:
        leader = self._settled_leader()
        if leader is None and window.fault in LEADER_FAULTS:
            return {"fault": window.fault, "skipped": f"no settled leader within {leader_wait_seconds:g}s"}
        apply = getattr(self, "_" + window.fault.replace("-", "_"))
        return apply(window, leader)

    def _settled_leader(self) -> str | None:
        """The node a majority has followed for `leader_settled_seconds` and that itself claims leadership.

        Right after a heal a returning node can still force an election; a leader fault aimed at a belief that
        is about to change would hit a follower, and the window would show no failover at all."""
        deadline = time.monotonic() + leader_wait_seconds
        while time.monotonic() < deadline and not self.stopping.is_set():
            leader = self.watch.settled_leader(leader_settled_seconds)
            if leader is not None and self.cluster.claims_leadership(leader):
                return leader
            time.sleep(0.1)
        return None

    # --- faults ----------------------------------------------------------------------------------------------

    def _partition(self, window: Window, grudge: dict, target: str | None) -> dict:
        grudge = {node: set(refused) for node, refused in grudge.items()}
        rules = self.network.cut(grudge)
        began = time.monotonic()
        details = {"grudge": _sorted(grudge), "components": net.components(grudge)}
        if target is not None:
            details["target"] = target
        start = self.history.nemesis(window.fault, **details)
        self.network.verify(grudge)
        self.stopping.wait(max(0.0, window.fault_seconds - (time.monotonic() - began)))
        self.network.heal()
        return self._stopped(start, began, target, rules=len(rules))

    def _partition_leader(self, window: Window, leader: str) -> dict:
        return self._partition(window, net.isolate(leader, list(self.cluster.node_ids)), leader)

    def _partition_halves(self, window: Window, leader: str | None) -> dict:
        return self._partition(window, window.choice["grudge"], _in_minority(window.choice["grudge"], leader))

    def _partition_ring(self, window: Window, leader: str | None) -> dict:
        return self._partition(window, window.choice["grudge"], None)

    def _kill_leader(self, window: Window, leader: str) -> dict:
        self.cluster.kill(leader)
        began = time.monotonic()
        start = self.history.nemesis(window.fault, target=leader)
        self.stopping.wait(window.fault_seconds)
        self.cluster.restart(leader)
        return self._stopped(start, began, leader)

    def _pause_leader(self, window: Window, leader: str) -> dict:
        self.cluster.pause(leader)
        began = time.monotonic()
        start = self.history.nemesis(window.fault, target=leader)
        self.stopping.wait(window.fault_seconds)
        self.cluster.resume(leader)
        return self._stopped(start, began, leader)

    def _kill_partition(self, window: Window, leader: str) -> dict:
        followers = sorted(node for node in self.cluster.node_ids if node != leader)
        rng = random.Random(window.choice["draw"])
        rng.shuffle(followers)
        victim, companion = followers[0], followers[1]
        grudge = net.complete_grudge([[leader, companion], [node for node in self.cluster.node_ids
                                                            if node not in (leader, companion)]])
        self.cluster.kill(victim)
        rules = self.network.cut(grudge)
        began = time.monotonic()
        start = self.history.nemesis(window.fault, target=leader, killed=victim, grudge=_sorted(grudge),
                                     components=net.components(grudge))
        self.network.verify(grudge)
        self.stopping.wait(max(0.0, window.fault_seconds - (time.monotonic() - began)))
        self.network.heal()
        self.cluster.restart(victim)
        return self._stopped(start, began, leader, rules=len(rules))

    def _clock_bump(self, window: Window, leader: str) -> dict:
        if not self.clock.available:
            raise NemesisIneffective(f"clock-bump planned without libfaketime: {self.clock.skipped}")
        offset = window.choice["sign"] * clock.bump_seconds
        self.clock.bump(leader, offset)
        began = time.monotonic()
        start = self.history.nemesis(window.fault, target=leader, offset_seconds=offset)
        self.stopping.wait(window.fault_seconds)
        self.clock.reset(leader)
        return self._stopped(start, began, leader)

    def _stopped(self, start: dict, began: float, victim: str | None, **extra) -> dict:
        """Record the stop, with what the LeaderWatch saw during the fault; what happened, for the run report."""
        details = {**extra, "seconds": round(time.monotonic() - began, 3)}
        if victim is not None:
            elected = self.watch.first_leader_after(began, victim)
            details["new_leader"] = None if elected is None else elected[1]
            details["election_seconds"] = None if elected is None else round(elected[0] - began, 3)
        self.history.nemesis_end(start, **details)
        return {**start["value"], **details}
