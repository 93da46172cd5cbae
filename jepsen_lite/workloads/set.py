"""W2, the set (jepsen.md §6.2): no acknowledged add is lost, nothing unexpected appears, every node converges.

An add of element e writes its own KV key, secret/data/jl/set/<e>, so adds commute; e is "<worker>-<seq>",
unique over the run. A read is a LIST of secret/metadata/jl/set/ through the active node (X-Vault-Forward), so
linearizable; each worker reads about every `read_interval_seconds`. The final reads, after heal and quiesce,
are made by `final_reads` on every node from its own replica, each at an X-Vault-Index the runner got from a
last write: a node that has not applied everything by then answers 412 and is asked again (bounded).
"""

import time

from ..client import Outcome, classify_read, classify_write, perform
from . import FORWARD_ACTIVE, Worker, mount_path, prefix

set_key = "set/elements"  # the one set of the run, as the history names it
read_interval_seconds = 2.0
final_read_attempts = 5
final_read_backoff_seconds = 0.5
element_path = f"{mount_path}/data/{prefix}/set"
list_path = f"{mount_path}/metadata/{prefix}/set/"


class SetWorker(Worker):
    name = "set"

    def __init__(self, context, number, node_id, seed):
        super().__init__(context, number, node_id, seed)
        self.sequence = 0
        self.last_read = time.monotonic() - self.rng.uniform(0, read_interval_seconds)

    def step(self) -> None:
        if time.monotonic() - self.last_read >= read_interval_seconds:
            self.last_read = time.monotonic()
            self.operation("read", set_key, None, lambda: list_elements(self.client, FORWARD_ACTIVE))
            return
        self.sequence += 1
        element = f"{self.number}-{self.sequence}"
        self.operation("add", set_key, element, lambda: _add(self.client, element))


def _add(client, element: str):
    outcome = classify_write(perform(client, "POST", f"{element_path}/{element}", {"data": {"v": element}}))
    return outcome, ({"index_token": outcome.answer.index_token} if outcome.type == "ok" else {})


def list_elements(client, headers: dict):
    """LIST the set: (Outcome, {"value": sorted elements}) when ok; a 404 is the empty set."""
    outcome = classify_read(perform(client, "LIST", list_path, headers=headers), absent_ok=True)
    if outcome.type != "ok":
        return outcome, {}
    if outcome.answer.status == 404:
        return outcome, {"value": []}
    data = outcome.answer.body.get("data") if isinstance(outcome.answer.body, dict) else None
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list):
        return Outcome("fail", "malformed-answer", outcome.answer), {}
    return outcome, {"value": sorted(keys)}


def final_reads(worker: Worker, node_ids: list[str], index_token: str | None) -> None:
    """One ok final read per node if it can be had: LIST on the node's own replica at `index_token`."""
    headers = {"X-Vault-Index": index_token} if index_token else {}
    for node_id in node_ids:
        worker.rebind(node_id)
        for _ in range(final_read_attempts):
            outcome, _ = worker.operation("read", set_key, None, lambda: list_elements(worker.client, headers),
                                          final=True)
            if outcome.type == "ok":
                break
            time.sleep(final_read_backoff_seconds)
