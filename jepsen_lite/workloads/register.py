"""W1, the register (jepsen.md §6.2): KV v2 keys read, written and check-and-set, checked per key for
linearizability (WGL) and by the version checker.

Workers come in pairs; a pair shares one key at a time, and moves to a fresh key after `key_ops_max` operations
or `key_infos_max` indeterminate ones, so that each key's search stays small (the info count is what makes WGL
explode, jepsen.md §3.3). Worker i is bound to node i mod n, so a pair spans two nodes and keys straddle faults.

    read   GET  secret/data/jl/reg/<k>  with X-Vault-Forward: active-node (a standby would answer from its
           replica, which may lag by design): 200 -> ok (version, value); 404 -> ok (0, null)
    write  POST secret/data/jl/reg/<k>  {"data": {"v": "<worker>-<seq>"}}: 200 -> ok, the version it made
    cas    POST with {"options": {"cas": e}}: e is the last version this worker saw of the key, sometimes off by
           one so that both outcomes occur; 400 "check-and-set parameter did not match" -> fail cas-mismatch

Every written value is unique ("<worker>-<seq>"), so a read names the write it saw.
"""

import threading

from ..client import Outcome, classify_read, classify_write, perform
from . import FORWARD_ACTIVE, Worker, kv_value, kv_version, mount_path, prefix

key_ops_max = 120  # operations on one key before the pair moves on
key_infos_max = 10  # indeterminate operations on one key before the pair moves on
read_share, write_share = 0.5, 0.2  # the rest is cas
cas_off_by_one_share = 0.2
assert read_share + write_share < 1


class Keys:
    """The current key of each pair, shared by the register workers: "reg/k<n>", n counting up over the run."""

    def __init__(self):
        self._lock = threading.Lock()
        self._next = 0
        self._current: dict[int, list] = {}  # pair -> [key, ops, infos]
        self.all: list[str] = []

    def current(self, pair: int) -> str:
        with self._lock:
            if pair not in self._current:
                self._current[pair] = [self._fresh(), 0, 0]
            return self._current[pair][0]

    def note(self, pair: int, key: str, outcome_type: str) -> None:
        with self._lock:
            entry = self._current.get(pair)
            if entry is None or entry[0] != key:
                return  # the partner already moved the pair on
            entry[1] += 1
            entry[2] += outcome_type == "info"
            if entry[1] >= key_ops_max or entry[2] >= key_infos_max:
                self._current[pair] = [self._fresh(), 0, 0]

    def _fresh(self) -> str:
        key = f"reg/k{self._next}"
        self._next += 1
        self.all.append(key)
        return key


def kv_path(key: str) -> str:
    return f"{mount_path}/data/{prefix}/{key}"


class RegisterWorker(Worker):
    name = "register"

    def __init__(self, context, number, node_id, seed, keys: Keys):
        super().__init__(context, number, node_id, seed)
        self.keys = keys
        self.pair = number // 2
        self.sequence = 0
        self.key: str | None = None
        self.seen_version = 0  # the highest version of `key` this worker saw

    def step(self) -> None:
        key = self.keys.current(self.pair)
        if key != self.key:
            self.key, self.seen_version = key, 0
        draw = self.rng.random()
        if draw < read_share:
            outcome_type = self.read(key)
        elif draw < read_share + write_share:
            outcome_type = self.write(key)
        else:
            outcome_type = self.cas(key)
        self.keys.note(self.pair, key, outcome_type)

    def read(self, key: str) -> str:
        outcome, outputs = self.operation("read", key, None, lambda: read_register(self.client, key))
        if outcome.type == "ok":
            self.seen_version = max(self.seen_version, outputs["version"])
        return outcome.type

    def write(self, key: str) -> str:
        value = self._next_value()
        outcome, outputs = self.operation("write", key, value, lambda: self._post(key, {"data": {"v": value}}))
        self._saw(outputs)
        return outcome.type

    def cas(self, key: str) -> str:
        expected = self.seen_version
        if self.rng.random() < cas_off_by_one_share:
            expected = max(0, expected + self.rng.choice((-1, 1)))
        value = self._next_value()
        body = {"options": {"cas": expected}, "data": {"v": value}}
        outcome, outputs = self.operation("cas", key, [expected, value], lambda: self._post(key, body))
        self._saw(outputs)
        return outcome.type

    def _next_value(self) -> str:
        self.sequence += 1
        return f"{self.number}-{self.sequence}"

    def _saw(self, outputs: dict) -> None:
        if outputs.get("version") is not None:
            self.seen_version = max(self.seen_version, outputs["version"])

    def _post(self, key: str, body: dict):
        outcome = classify_write(perform(self.client, "POST", kv_path(key), body))
        if outcome.type != "ok":
            return outcome, {}
        return outcome, {"version": kv_version(outcome.answer.body), "index_token": outcome.answer.index_token}


def read_register(client, key: str, headers: dict | None = None):
    """A linearizable read (forwarded to the active node): (Outcome, {"value", "version"}) when ok."""
    outcome = classify_read(perform(client, "GET", kv_path(key), headers=headers or FORWARD_ACTIVE),
                            absent_ok=True)
    if outcome.type != "ok":
        return outcome, {}
    if outcome.answer.status == 404:
        return outcome, {"value": None, "version": 0}
    version = kv_version(outcome.answer.body)
    if version is None:
        return Outcome("fail", "malformed-answer", outcome.answer), {}
    return outcome, {"value": kv_value(outcome.answer.body), "version": version}
