"""Leases: what a login (and, later, a dynamic secret) hands out for a limited time, by lease id.

A lease id is `<request path>/<24 random base62>` (Vault's form). Each lease is kept at `id/<lease id>` in
its view: the path, times and, for a login, the accessor of the token it stands for. The token store still
owns token expiry; a token lease is the handle through which sys/leases looks it up and revokes it, and the
maintenance pass drops the leases whose token is gone. Entries are written through the barrier, so they
survive a restart.
"""

from __future__ import annotations

import dataclasses
import json

from ..clock import Clock
from ..sdk.errors import InvalidRequest
from ..sdk.storage import StorageView
from .keyring import format_rfc3339
from .tokens import TokenStore, random_base62

lease_suffix_chars = 24
leases_per_pass_max = 1_000  # leases one tidy pass looks at


@dataclasses.dataclass
class Lease:
    lease_id: str
    path: str
    issue_time: float
    accessor: str = ""  # the token this lease stands for (login leases)

    def encode(self) -> bytes:
        return json.dumps(dataclasses.asdict(self)).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Lease:
        return cls(**json.loads(raw))


class LeaseStore:
    def __init__(self, view: StorageView, tokens: TokenStore, clock: Clock):
        self.view = view
        self.tokens = tokens
        self.clock = clock

    async def register_login(self, path: str, accessor: str) -> str:
        lease_id = f"{path.rstrip('/')}/{random_base62(lease_suffix_chars)}"
        await self.view.put(f"id/{lease_id}", Lease(lease_id, path, self.clock.now(), accessor).encode())
        return lease_id

    async def get(self, lease_id: str) -> Lease:
        if not lease_id:
            raise InvalidRequest("lease_id must be specified")
        raw = await self.view.get(f"id/{lease_id}") if ".." not in lease_id else None
        if raw is None:
            raise InvalidRequest("invalid lease")
        return Lease.decode(raw)

    async def lookup(self, lease_id: str) -> dict:
        lease = await self.get(lease_id)
        entry = await self.tokens.lookup_accessor(lease.accessor) if lease.accessor else None
        if entry is None:
            raise InvalidRequest("invalid lease")
        now = self.clock.now()
        return {
            "id": lease.lease_id, "issue_time": _time(lease.issue_time),
            "expire_time": _time(entry.expire_time) if entry.expire_time else None,
            "last_renewal": _time(entry.last_renewal_time) if entry.last_renewal_time else None,
            "path": lease.path, "renewable": entry.renewable, "ttl": entry.ttl(now),
        }

    async def renew(self, lease_id: str) -> None:
        lease = await self.get(lease_id)
        if lease.accessor:
            raise InvalidRequest("tokens cannot be renewed through this endpoint")

    async def revoke(self, lease_id: str) -> None:
        lease = await self.get(lease_id)
        await self._revoke(lease)

    async def revoke_prefix(self, prefix: str) -> int:
        """Revoke every lease whose id starts with `prefix` (a path; bounded by what exists)."""
        revoked = 0
        for lease_id in await self._ids(prefix.rstrip("/") + "/"):
            raw = await self.view.get(f"id/{lease_id}")
            if raw is not None:
                await self._revoke(Lease.decode(raw))
                revoked += 1
        return revoked

    async def list(self, prefix: str) -> list[str]:
        return await self.view.list(f"id/{prefix}")

    async def tidy(self) -> int:
        """Drop leases whose token is gone (expired or revoked elsewhere). At most leases_per_pass_max."""
        dropped = 0
        for lease_id in (await self._ids(""))[:leases_per_pass_max]:
            raw = await self.view.get(f"id/{lease_id}")
            lease = Lease.decode(raw) if raw else None
            if lease is not None and lease.accessor and await self.tokens.lookup_accessor(lease.accessor) is None:
                await self.view.delete(f"id/{lease_id}")
                dropped += 1
        return dropped

    async def _revoke(self, lease: Lease) -> None:
        if lease.accessor:
            await self.tokens.revoke_accessor(lease.accessor)
        await self.view.delete(f"id/{lease.lease_id}")

    async def _ids(self, prefix: str) -> list[str]:
        """Every lease id under `prefix`, depth first (bounded by what exists)."""
        found = []
        for child in await self.view.list(f"id/{prefix}"):
            if child.endswith("/"):
                found += await self._ids(prefix + child)
            else:
                found.append(prefix + child)
        return found


def _time(seconds: float) -> str:
    """Go's RFC3339Nano, as Vault prints lease and wrapping times."""
    return format_rfc3339(round(seconds * 1_000_000_000))
