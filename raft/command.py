"""Command: the one payload every Raft entry carries, and its versioned msgpack codec. Never pickle.

Wire format: one version byte (`command_version`), then a msgpack array
`[kind, [[op, key, value|nil], ...], idempotency_id, proposed_unix_seconds]`.

The proposer chooses everything that would otherwise be non-deterministic: the 16-byte idempotency id (from
a random source it is given) and the time. Apply reads neither a clock nor a random source.

`decode` is the gate for bytes from the log, which a peer or an old version may have written: anything
malformed raises CommandRejected and nothing else. It checks shape and types; per-key and per-value sizes
belong to the store (`storage.batch`), whose InvalidBatch the state machine turns into a rejection too.
"""

import dataclasses
import math
import random

import msgpack

from . import limits
from .errors import CommandRejected

command_version = 1
KINDS = ("write", "noop", "config", "stage", "restore")
# Keys under this prefix belong to the replication layer; a "write" may not touch them.
reserved_prefix = "_raft/"
# A "config" command writes only here: cluster configuration records kept by the raft wrapper.
config_prefix = "_raft/config/"
# A "stage" command writes only here: the chunks of a snapshot being restored (raft/restore.py). A "restore"
# command carries one op, ("put", "<staging_prefix><restore id>/", sha256 of the chunks joined), and replaces
# the store's state by that snapshot on every node, at its raft index.
staging_prefix = "_raft/staging/"

Op = tuple[str, str, bytes | None]


def new_idempotency_id(rng: random.Random) -> bytes:
    """A fresh id from the proposer's random source (the composition root seeds it; tests pass a seeded one)."""
    return rng.randbytes(limits.idempotency_id_bytes)


@dataclasses.dataclass(frozen=True)
class Command:
    """One replicated command. Constructing an invalid one raises CommandRejected."""

    kind: str
    ops: tuple[Op, ...]
    idempotency_id: bytes
    proposed_unix_seconds: float  # stamped by the proposer; apply never reads a clock

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", _checked_ops(self.kind, self.ops))
        if not isinstance(self.idempotency_id, bytes) or len(self.idempotency_id) != limits.idempotency_id_bytes:
            raise CommandRejected(f"the idempotency id must be {limits.idempotency_id_bytes} bytes")
        seconds = self.proposed_unix_seconds
        if not isinstance(seconds, float) or not math.isfinite(seconds):
            raise CommandRejected("the proposed time must be a finite float")
        if not 0.0 <= seconds <= limits.proposed_unix_seconds_max:
            raise CommandRejected(f"the proposed time {seconds!r:.40} is out of range")


def _checked_ops(kind: object, ops: object) -> tuple[Op, ...]:
    if kind not in KINDS:
        raise CommandRejected(f"unknown command kind {kind!r:.80}; expected one of {KINDS}")
    if not isinstance(ops, list | tuple):
        raise CommandRejected("ops must be a list")
    if len(ops) > limits.command_ops_max:
        raise CommandRejected(f"a command holds at most {limits.command_ops_max} ops, not {len(ops)}")
    if kind == "noop" and ops:
        raise CommandRejected("a noop carries no ops")
    if kind == "restore" and len(ops) != 1:
        raise CommandRejected("a restore carries exactly one op")
    return tuple(_checked_op(kind, position, item) for position, item in enumerate(ops))


def _checked_op(kind: str, position: int, item: object) -> Op:
    if not isinstance(item, list | tuple) or len(item) != 3:
        raise CommandRejected(f"op {position} is not [op, key, value]")
    op, key, value = item
    if not isinstance(key, str) or not key:
        raise CommandRejected(f"op {position}: the key must be a non-empty string")
    if kind == "write" and key.startswith(reserved_prefix):
        raise CommandRejected(f"op {position}: keys under {reserved_prefix!r} are reserved")
    if kind == "config" and not key.startswith(config_prefix):
        raise CommandRejected(f"op {position}: a config command writes only under {config_prefix!r}")
    if kind in ("stage", "restore") and not key.startswith(staging_prefix):
        raise CommandRejected(f"op {position}: a {kind} command names keys under {staging_prefix!r} only")
    if kind == "restore" and (op != "put" or not key.endswith("/")):
        raise CommandRejected("a restore names its staging folder: ['put', folder/, sha256]")
    if op == "put" and isinstance(value, bytes):
        return ("put", key, value)
    if op == "delete" and value is None:
        return ("delete", key, None)
    raise CommandRejected(f"op {position}: expected ['put', key, bytes] or ['delete', key, nil]")


def encode(command: Command) -> bytes:
    """The command's wire bytes; CommandRejected if they would exceed `limits.command_bytes_max`."""
    body = [
        command.kind,
        [list(op) for op in command.ops],
        command.idempotency_id,
        command.proposed_unix_seconds,
    ]
    data = bytes([command_version]) + msgpack.packb(body, use_bin_type=True)
    if len(data) > limits.command_bytes_max:
        raise CommandRejected(f"the command encodes to {len(data)} bytes, over {limits.command_bytes_max}")
    return data


def decode(data: object) -> Command:
    """The command in `data`, or CommandRejected. Never raises anything else, whatever the bytes."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CommandRejected(f"a command is bytes, not {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise CommandRejected("the command is empty")
    if len(data) > limits.command_bytes_max:
        raise CommandRejected(f"the command is {len(data)} bytes, over {limits.command_bytes_max}")
    if data[0] != command_version:
        raise CommandRejected(f"unknown command version {data[0]}; this node speaks {command_version}")
    try:
        body = msgpack.unpackb(
            data[1:],
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_ext_len=0,
            max_map_len=0,
        )
    except (ValueError, TypeError, msgpack.UnpackException) as error:
        raise CommandRejected(f"the command is not valid msgpack: {type(error).__name__}") from None
    if not isinstance(body, list) or len(body) != 4:
        raise CommandRejected("the command is not [kind, ops, idempotency_id, proposed_unix_seconds]")
    kind, ops, idempotency_id, proposed_unix_seconds = body
    return Command(kind, ops, idempotency_id, proposed_unix_seconds)
