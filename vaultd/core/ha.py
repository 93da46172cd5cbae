"""High availability as the core sees it: is this node the active one, and how are its reads made consistent.

The core never imports raft. The composition root gives it a `HighAvailability`: `Standalone` for one node,
or the Raft-backed one (vaultd/cluster.py). A standby is a performance standby: it serves reads from its own
replica; a write reaching its storage raises `StandbyWrite`, which the HTTP layer answers by forwarding the
request to the active node or redirecting the client there (DESIGN.md §Read path).
"""

import contextvars
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Protocol

from ..sdk.errors import InternalError, PreconditionFailed, VaultError


class StandbyWrite(VaultError):
    """A write reached the storage of a node that is not active. `leader_api_addr` is a URL, or None.

    The HTTP layer forwards or redirects the request; only when it cannot does the client see it (503)."""

    def __init__(self, leader_api_addr: str | None):
        super().__init__("node is not active" if leader_api_addr is None else f"node is not active; the active "
                         f"node is {leader_api_addr}")
        self.leader_api_addr = leader_api_addr


class NoActiveNode(InternalError):
    """No node is active right now (an election): Vault's 'local node not active but active cluster node not found'."""

    def __init__(self):
        super().__init__("local node not active but active cluster node not found")


class HighAvailability(Protocol):
    enabled: bool

    def is_active(self) -> bool:
        """This node leads, as far as it knows: a routing hint, not a read lease."""

    def is_performance_standby(self) -> bool:
        """A follower in contact with an active node: it serves reads."""

    def leader_api_addr(self) -> str | None:
        """The active node's API URL (scheme://host:port), or None when no leader is known."""

    async def read_barrier(self) -> int:
        """On the active node: once this returns, local reads see every write acknowledged before the call."""

    async def begin_read(self) -> Callable[[], Awaitable[None]]:
        """On the active node, at the start of a request: start a read barrier and return `confirm`, to await
        before the answer leaves. Local reads made in between are linearizable once `confirm` returns: the
        barrier proves this node still led, in the same term, after the request arrived, and a leader whose term
        is settled has applied every write acknowledged before. (A new leader whose term is not settled yet waits
        for the barrier here first.)"""

    async def wait_for_index(self, index: int, timeout: float) -> int:
        """Wait until this node has applied `index`; raises IndexNotPresent after `timeout`."""

    async def status(self) -> dict:
        """raft_committed_index, raft_applied_index and leader_cluster_address, for sys/leader."""

    def active_since(self) -> str:
        """RFC 3339 time this node last became active."""

    async def step_down(self) -> None:
        """Give up active status (sys/step-down)."""

    # Used by the HTTP layer on a standby only, so `Standalone` (never a standby) leaves them out:
    # `forwarding` ("forward" or "redirect"), `store_applied_index()`, `await wait_for_leader()`, and the
    # raft operations of sys/storage/raft/* (configuration, remove_peer, autopilot_state, export_snapshot,
    # restore_snapshot, join_request/admit/complete_join).


class IndexNotPresent(PreconditionFailed):
    """X-Vault-Index names a write this node has not applied yet (412)."""

    def __init__(self):
        super().__init__("required index state not present")


class Standalone:
    """One node, no replication: always active, every read is local and current."""

    enabled = False

    def is_active(self) -> bool:
        return True

    def is_performance_standby(self) -> bool:
        return False

    def leader_api_addr(self) -> str | None:
        return None

    async def read_barrier(self) -> int:
        return 0

    async def begin_read(self) -> Callable[[], Awaitable[None]]:
        return _confirmed

    async def wait_for_index(self, index: int, timeout: float) -> int:
        return index

    async def status(self) -> dict:
        return {}

    def active_since(self) -> str:
        return "0001-01-01T00:00:00Z"

    async def step_down(self) -> None:
        return None


async def _confirmed() -> None:
    return None


@dataclasses.dataclass
class WriteTracker:
    """The highest storage index this request wrote (X-Vault-Index); 0 when it wrote nothing. `standby` marks a
    request that runs on a standby: its reads had no read barrier, so it must never write here, even if this
    node wins an election mid-request; the whole request goes to the active path instead."""

    index: int = 0
    standby: bool = False


write_tracker: contextvars.ContextVar[WriteTracker | None] = contextvars.ContextVar("write_tracker", default=None)


def record_write(index: int) -> int:
    """Note `index` as written by the current request, if it is tracked; returns it."""
    tracker = write_tracker.get()
    if tracker is not None and index > tracker.index:
        tracker.index = index
    return index
