"""A truly linearizable KV v2 register, simulated: concurrent clients issue reads, writes and CASes, each taking
effect at a point drawn uniformly inside its interval, applied to a sequential (version, value) model in that
order (jepsen.md §6.8). An "info" write or CAS takes effect with probability 1/2, possibly after its client
gave up on it, and its client goes on as a fresh process.
"""

import dataclasses
import random

from .histories import Spec

tick_ns = 1_000_000  # the simulation counts in ms, the history in ns
_FUNCTIONS = ("read", "write", "cas")
_WEIGHTS = (5, 2, 3)


@dataclasses.dataclass
class _Planned:
    client: int
    process: int
    f: str
    key: str
    call: int
    ret: int
    info: bool
    point: int | None  # when it takes effect; None: never


def simulate_register(rng: random.Random, clients: int = 4, ops_per_client: int = 25, keys: int = 2,
                      info_probability: float = 0.08) -> list[Spec]:
    """The operations of one run, as Specs in invocation order."""
    planned = _plan(rng, clients, ops_per_client, keys, info_probability)
    state = {f"reg/k{key}": (0, None) for key in range(keys)}
    seen = dict.fromkeys(range(clients), 0)  # the last version each client saw
    specs = []
    effective = sorted((op for op in planned if op.point is not None), key=lambda op: op.point)
    for number, op in enumerate(effective + [op for op in planned if op.point is None]):
        specs.append(_apply(rng, op, state, seen, f"{op.client}-{number}"))
    return sorted(specs, key=lambda spec: spec.call)


def _plan(rng: random.Random, clients: int, ops_per_client: int, keys: int, info_probability: float) -> list:
    planned, next_process = [], clients
    for client in range(clients):
        process, time = client, rng.randint(0, 20)
        for _ in range(ops_per_client):
            f = rng.choices(_FUNCTIONS, _WEIGHTS)[0]
            call = time + rng.randint(1, 30)
            ret = call + rng.randint(1, 60)
            info = f != "read" and rng.random() < info_probability
            point = rng.randint(call, ret)
            if info:
                point = rng.randint(call, ret + 200) if rng.random() < 0.5 else None
            point = None if point is None else point * tick_ns
            key = f"reg/k{rng.randrange(keys)}"
            planned.append(_Planned(client, process, f, key, call * tick_ns, ret * tick_ns, info, point))
            if info:
                process, next_process = next_process, next_process + 1
            time = ret
    return planned


def _apply(rng: random.Random, op: _Planned, state: dict, seen: dict, value: str) -> Spec:
    """The op's inputs (chosen from what its client saw) and its outcome in the model."""
    version, current = state[op.key]
    if op.f == "read":
        seen[op.client] = version
        return Spec(op.process, "read", op.key, None, op.call, op.ret, "ok", current, {}, {"version": version})
    expected = max(0, seen[op.client] + rng.choice((0, 0, 0, 1, -1)))
    applies = op.point is not None and (op.f == "write" or version == expected)
    if applies:
        state[op.key] = (version + 1, value)
    sent = value if op.f == "write" else [expected, value]
    if op.info:
        return Spec(op.process, op.f, op.key, sent, op.call, op.ret, "info", None, {}, {"error": "timeout"})
    if not applies:
        return Spec(op.process, "cas", op.key, sent, op.call, op.ret, "fail", None, {}, {"error": "cas-mismatch"})
    seen[op.client] = version + 1
    return Spec(op.process, op.f, op.key, sent, op.call, op.ret, "ok", None, {}, {"version": version + 1})


def stale_read_mutation(specs: list[Spec]) -> list[Spec] | None:
    """The same history with one ok read, invoked after an acknowledged write of its key completed, made to
    return the initial state instead; None when no read qualifies."""
    for index, spec in enumerate(specs):
        if spec.f != "read" or spec.type != "ok":
            continue
        if any(other.f in ("write", "cas") and other.type == "ok" and other.key == spec.key and other.ret < spec.call
               for other in specs):
            stale = dataclasses.replace(spec, result=None, outputs={"version": 0})
            return specs[:index] + [stale] + specs[index + 1:]
    return None
