"""W3, sessions against standbys (jepsen.md §6.2): read-your-writes and monotonic reads with X-Vault-Index;
the staleness of untokenised reads, as a figure.

Each session worker owns one key, session/s<number>, writes it through the standby it is pinned to, and reads it
back from that standby or from another node, its "observer", as a client spread over a cluster's standbys would.
When its node becomes the leader (per the LeaderWatch) the session moves to the next node that is not; the
observer is the next node after the pinned one that is not the leader either, when there is one. One step:

1. write the key through the pinned standby (which forwards to the active node): the answer's X-Vault-Index is
   the session's token when it is above the one it holds;
2. read the key with X-Vault-Index: <the session's highest token>, on the pinned standby or the observer (a coin
   toss), half of the time also with X-Vault-Inconsistent: forward-active-node. A 412 (the node had not caught
   up within its wait) is a definite fail, retried after a backoff for up to `retry_seconds_max`;
3. read the key on the observer with no token: a local, possibly stale read whose staleness the checker reports.
   (The pinned standby is never stale for the session's own writes: it applies a write it forwarded before
   relaying the answer, so only another replica shows replication lag.)
"""

import time

from ..client import Client, classify_read, classify_write, perform
from . import Worker, kv_value, kv_version, mount_path, prefix

retry_seconds_max = 1.0  # 412s on one tokenised read are retried for this long
retry_backoff_seconds = 0.1
forward_share = 0.5
observer_share = 0.5  # tokenised reads sent to the observer rather than the pinned standby


class SessionWorker(Worker):
    name = "session"

    def __init__(self, context, number, node_id, seed):
        super().__init__(context, number, node_id, seed)
        self.key = f"session/s{number}"
        self.path = f"{mount_path}/data/{prefix}/{self.key}"
        self.sequence = 0
        self.token: int | None = None  # the highest X-Vault-Index this session was given
        self.observer_id: str | None = None
        self.observer: Client | None = None

    def _run(self) -> None:
        try:
            super()._run()
        finally:
            if self.observer is not None:
                self.observer.close()

    def step(self) -> None:
        self._choose_nodes()
        self.sequence += 1
        value = f"{self.number}-{self.sequence}"
        self.operation("write", self.key, value, lambda: self._write(value))
        if self.token is not None and self.live():
            self._tokenised_read()
        if self.live():
            self.operation("read", self.key, None, lambda: self._read(self.observer, {}), node=self.observer_id)

    def _choose_nodes(self) -> None:
        leader = self.context.watch.leader()
        nodes = self.context.node_ids
        if leader == self.node_id:
            self.rebind(_after(nodes, self.node_id, {leader}))
        observer = _after(nodes, self.node_id, {self.node_id, leader})
        if observer != self.observer_id:
            if self.observer is not None:
                self.observer.close()
            self.observer_id, self.observer = observer, self._client(observer)

    def _write(self, value: str):
        outcome = classify_write(perform(self.client, "POST", self.path, {"data": {"v": value}}))
        if outcome.type != "ok":
            return outcome, {}
        token = outcome.answer.index_token
        if token is not None and token.isdigit():
            self.token = max(self.token or 0, int(token))
        return outcome, {"version": kv_version(outcome.answer.body), "index_token": token}

    def _tokenised_read(self) -> None:
        forward = self.rng.random() < forward_share
        node, client = ((self.observer_id, self.observer) if self.rng.random() < observer_share
                        else (self.node_id, self.client))
        headers = {"X-Vault-Index": str(self.token)}
        if forward:
            headers["X-Vault-Inconsistent"] = "forward-active-node"
        give_up = time.monotonic() + retry_seconds_max
        while True:
            outcome, _ = self.operation("read", self.key, None, lambda: self._read(client, headers), node=node,
                                        index_token=headers["X-Vault-Index"], forward=forward)
            if outcome.http_status != 412 or time.monotonic() >= give_up or not self.live():
                return
            self.context.stopping.wait(retry_backoff_seconds)

    def _read(self, client: Client, headers: dict):
        outcome = classify_read(perform(client, "GET", self.path, headers=headers), absent_ok=True)
        if outcome.type != "ok":
            return outcome, {}
        if outcome.answer.status == 404:
            return outcome, {"value": None, "version": 0}
        return outcome, {"value": kv_value(outcome.answer.body), "version": kv_version(outcome.answer.body),
                         "index_token": outcome.answer.index_token}


def _after(nodes: list[str], node: str, avoid: set) -> str:
    """The first node after `node` in the ring that is not in `avoid`; else the first after it at all."""
    position = nodes.index(node)
    ring = nodes[position + 1:] + nodes[:position]
    return next((candidate for candidate in ring if candidate not in avoid), ring[0] if ring else node)
