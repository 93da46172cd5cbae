"""Errors of the replication layer.

    RaftError
    ├── NotLeader            this node does not lead; carries the leader's api_addr (or None when unknown).
    │                        Retryable at the leader, with the same idempotency id.
    ├── QueueFull            the proposal queue is full; nothing was proposed. Retryable after a backoff.
    ├── ProposalTimeout      no answer in time. The outcome is UNKNOWN: the entry may still commit. Retry with
    │                        the same idempotency id, never with a fresh one.
    ├── CommandRejected      the command itself is refused (malformed, oversized, wrong version, invalid batch).
    │                        Deterministic: every node refuses it the same way and the cluster stays healthy.
    │                        Never retry it unchanged.
    └── FatalApplyError      the store could not apply a committed entry (disk full, fsync failed, store closed).
                             The node must stop: carrying on would leave a hole in its applied log.

Operating errors are these classes; `retryable` says whether the same command may simply be sent again.
Programmer errors are assertions.
"""


class RaftError(Exception):
    """Base class of every error the replication layer raises on purpose."""

    retryable = False


class NotLeader(RaftError):
    """This node is not the leader. `leader_api_addr` is where to send the request, or None if unknown."""

    retryable = True

    def __init__(self, leader_api_addr: str | None):
        where = leader_api_addr if leader_api_addr is not None else "unknown"
        super().__init__(f"this node is not the leader; the leader is {where}")
        self.leader_api_addr = leader_api_addr


class QueueFull(RaftError):
    """The proposal queue is at its bound. Nothing was proposed; retry after a backoff."""

    retryable = True


class ProposalTimeout(RaftError):
    """No result within the proposal timeout. The command may or may not commit later: the outcome is unknown."""


class CommandRejected(RaftError):
    """The command is refused deterministically; `reason` says why in one line."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class FatalApplyError(RaftError):
    """Applying the committed entry at `raft_index` failed in the store. Stop the node; never retry or skip."""

    def __init__(self, raft_index: int, cause: str):
        super().__init__(f"cannot apply raft index {raft_index}: {cause}; stopping the node")
        self.raft_index = raft_index
        self.cause = cause
