"""The client workers: each a thread with one process id at a time, bound to a node, issuing one operation at a
time and recording it in the history (jepsen.md §6.2).

    register.py   KV v2 registers with check-and-set, two workers per key, keys rotated (WGL-sized)
    set.py        adds of unique elements, one KV key each; periodic reads; final reads on every node
    session.py    writes and X-Vault-Index reads against standbys; untokenised reads for staleness

`Worker.operation` is the one place an operation is recorded: invoke just before the request is sent, complete
just after the answer is parsed, and after an "info" the worker goes on under a fresh process id (a process
whose operation may still be in flight never invokes again).
"""

import dataclasses
import random
import threading
import time

from ..client import Client, Outcome

mount_path = "/v1/secret"
prefix = "jl"  # every workload key lives under secret/jl/ (the cluster is fresh for each run)
FORWARD_ACTIVE = {"X-Vault-Forward": "active-node"}  # a standby serves reads locally unless asked to forward
refused_backoff_seconds = 0.25  # after a request that could not even connect (a killed node): no busy loop


@dataclasses.dataclass
class Context:
    """What every worker of a run shares."""

    history: object  # jepsen_lite.history.History
    token: str
    nodes: dict[str, tuple[str, int]]  # node id -> (host, api port)
    watch: object  # jepsen_lite.watch.LeaderWatch
    deadline: float  # time.monotonic() at which workers stop invoking
    stopping: threading.Event
    stagger_seconds: float  # mean pause between one worker's operations
    ok_count: int = 0  # operations that completed ok, over every worker (the runner's warmup check)
    _count_lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def count_ok(self) -> None:
        with self._count_lock:
            self.ok_count += 1

    @property
    def node_ids(self) -> list[str]:
        return list(self.nodes)


class Worker:
    """Subclasses define `step()`: one or a few operations. `error` holds what crashed the thread (a harness bug,
    which aborts the run)."""

    name = "worker"

    def __init__(self, context: Context, number: int, node_id: str, seed: int):
        self.context = context
        self.number = number
        self.rng = random.Random(seed)
        self.process = context.history.fresh_process()
        self.node_id = node_id
        self.client = self._client(node_id)
        self.error: BaseException | None = None
        self.refused = False  # the last step met a node that refused connections
        self.thread = threading.Thread(target=self._run, name=f"{self.name}-{number}", daemon=True)

    def _client(self, node_id: str) -> Client:
        host, port = self.context.nodes[node_id]
        return Client(host, port, self.context.token)

    def rebind(self, node_id: str) -> None:
        if node_id != self.node_id:
            self.client.close()
            self.node_id, self.client = node_id, self._client(node_id)

    def _run(self) -> None:
        try:
            while self.live():
                self.refused = False
                self.step()
                pause = self.rng.uniform(0, 2 * self.context.stagger_seconds)
                self.context.stopping.wait(max(pause, refused_backoff_seconds) if self.refused else pause)
        except BaseException as error:  # the runner reports it and aborts
            self.error = error
        finally:
            self.client.close()

    def live(self) -> bool:
        return not self.context.stopping.is_set() and time.monotonic() < self.context.deadline

    def step(self) -> None:
        raise NotImplementedError

    def operation(self, f: str, key: str, value, send, *, node: str | None = None,
                  **invoke_fields) -> tuple[Outcome, dict]:
        """Invoke, `send()` -> (Outcome, outputs), complete. `outputs` may hold "value" (what a read read),
        "version" and "index_token"; the completion records them with the HTTP status and error. `node` is
        where `send` goes, this worker's node unless said otherwise."""
        invocation = self.context.history.invoke(self.process, f, key, value, node=node or self.node_id,
                                                 **invoke_fields)
        started = time.monotonic()
        outcome, outputs = send()
        recorded = {name: outputs[name] for name in ("version", "index_token") if outputs.get(name) is not None}
        if outcome.http_status is not None:
            recorded["http_status"] = outcome.http_status
        if outcome.error is not None:
            recorded["error"] = outcome.error
        self.context.history.complete(invocation, outcome.type, value=outputs.get("value"),
                                      latency_ms=round((time.monotonic() - started) * 1000, 3), **recorded)
        if outcome.type == "info":
            self.process = self.context.history.fresh_process()
        elif outcome.type == "ok":
            self.context.count_ok()
        self.refused = self.refused or outcome.error == "not-sent"
        return outcome, outputs


def kv_version(body) -> int | None:
    """The version in a KV v2 answer: data.version for a write, data.metadata.version for a read."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("version"), int):
        return data["version"]
    metadata = data.get("metadata")
    return metadata.get("version") if isinstance(metadata, dict) else None


def kv_value(body):
    """data.data.v of a KV v2 read."""
    data = body.get("data") if isinstance(body, dict) else None
    inner = data.get("data") if isinstance(data, dict) else None
    return inner.get("v") if isinstance(inner, dict) else None
