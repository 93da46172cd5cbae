"""Who leads, as seen from the harness: one poller thread per node asks `GET /v1/sys/leader` ten times a second.

Each answer is that node's belief: itself when `is_self`, else the node whose API address is its
`leader_address`, else nobody. The leader is the node a majority of the cluster believes in. A node cut off with
a minority may keep believing it leads (until it notices it lost its quorum, or forever in a broken server),
and a paused or killed node answers nothing: a belief not renewed within `belief_fresh_seconds` does not count.

The nemesis asks for the current leader (its target) and, after a leader fault, for the first moment a majority
followed another node: the election time of the report.
"""

import threading
import time

from .client import Answer, Client, perform

poll_interval_seconds = 0.1
poll_timeout_seconds = 0.3
belief_fresh_seconds = 1.0  # a belief not renewed this recently no longer counts
assert poll_interval_seconds < poll_timeout_seconds < belief_fresh_seconds


class LeaderWatch:
    """Start with `start()`, end with `stop()` (bounded join). Times are time.monotonic()."""

    def __init__(self, nodes: dict[str, tuple[str, int]]):
        self.nodes = dict(nodes)  # node id -> (host, api port)
        self._by_url = {f"http://{host}:{port}": node_id for node_id, (host, port) in self.nodes.items()}
        self._beliefs: dict[str, tuple[float, str | None]] = {}  # node id -> (when, the node it follows)
        self._changes: list[tuple[float, str | None]] = []  # (when, the majority's leader or None), on change
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=self._poll, args=(node_id,), name=f"leader-watch-{node_id}",
                                          daemon=True) for node_id in self.nodes]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            if thread.ident is not None:  # a run that aborted before the watch started
                thread.join(timeout=poll_timeout_seconds * 4)

    def leader(self) -> str | None:
        """The node a majority follows now, or None."""
        with self._lock:
            return self._majority_leader(time.monotonic())

    def settled_leader(self, seconds: float) -> str | None:
        """The node a majority follows now and has followed, with no change seen, for at least `seconds`."""
        with self._lock:
            now = time.monotonic()
            leader = self._majority_leader(now)
            if leader is None or not self._changes or now - self._changes[-1][0] < seconds:
                return None
            return leader if self._changes[-1][1] == leader else None

    def changes(self) -> list[tuple[float, str | None]]:
        with self._lock:
            return list(self._changes)

    def first_leader_after(self, since: float, excluding: str | None) -> tuple[float, str] | None:
        """The first time at or after `since` when a majority followed a node other than `excluding`, and which."""
        with self._lock:
            for when, leader in self._changes:
                if when >= since and leader is not None and leader != excluding:
                    return when, leader
        return None

    def _majority_leader(self, now: float) -> str | None:
        votes: dict[str, int] = {}
        for when, followed in self._beliefs.values():
            if followed is not None and now - when <= belief_fresh_seconds:
                votes[followed] = votes.get(followed, 0) + 1
        leaders = [node_id for node_id, count in votes.items() if count > len(self.nodes) // 2]
        return leaders[0] if leaders else None

    def _belief(self, node_id: str, answer) -> str | None:
        if not isinstance(answer, Answer) or answer.status != 200 or not isinstance(answer.body, dict):
            return None
        if answer.body.get("is_self") is True:
            return node_id
        return self._by_url.get(str(answer.body.get("leader_address") or "").rstrip("/"))

    def _poll(self, node_id: str) -> None:
        host, port = self.nodes[node_id]
        client = Client(host, port, timeout_seconds=poll_timeout_seconds, connect_timeout_seconds=poll_timeout_seconds)
        try:
            while not self._stopping.is_set():
                followed = self._belief(node_id, perform(client, "GET", "/v1/sys/leader"))
                now = time.monotonic()
                with self._lock:
                    self._beliefs[node_id] = (now, followed)
                    leader = self._majority_leader(now)
                    if not self._changes or self._changes[-1][1] != leader:
                        self._changes.append((now, leader))
                self._stopping.wait(poll_interval_seconds)
        finally:
            client.close()
