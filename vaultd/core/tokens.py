"""The token store: service tokens, salted at rest, their parent/child tree, their leases and their uses.

A token is `hvs.` + 24 random base62 characters and its accessor 24 more, both from `secrets`. Storage never
holds a token: every key is an HMAC-SHA256 under the store's salt (a "salted id"), so a copy of the store,
even of the plaintext above the barrier, yields no token that could be presented.

    id/<salted token>                              the TokenEntry as JSON (parent by salted id, never a token)
    accessor/<hmac(salt, accessor)>                the salted token id
    parent/<salted parent>/<salted child>          b"": the tree, walked to revoke children
    expire/<hour>/<unix seconds>.<salted token>    b"": when the expiration manager should look at a token

A token is valid while it is unexpired, not revocation-pending, and so is every ancestor: a child dies with its
parent at once, before the expiration manager gets to it, and a child whose parent is gone (a revocation that
crashed half-way) is invalid too. A revocation first marks its root revocation-pending and queues it in
`expire/` at the current second, then deletes leaves first and the root last, so a crash leaves nothing usable
and the next `revoke_expired()` finishes the job. The `id/` key is written last on create and deleted last on
revoke: it is the commit point, and index keys without an entry are skipped and cleaned up.

The HTTP side of the `auth/token/` mount is in `token_paths.py`.
"""

import asyncio
import dataclasses
import hashlib
import hmac
import json
import math
import secrets
import string
from collections.abc import Awaitable, Callable

from ..clock import Clock
from ..sdk.errors import InvalidRequest, PermissionDenied
from ..sdk.storage import StorageView

token_prefix = "hvs."
token_random_chars = 24
accessor_chars = 24
ttl_default_seconds = 768 * 3600  # the token mount's default lease TTL, as Vault's system default
ttl_max_seconds = 768 * 3600  # the token mount's max lease TTL; no non-periodic token outlives issue + this
token_depth_max = 64  # ancestors a token may have; every lookup walks them all
expired_revocations_per_pass_max = 1_000  # tokens (or stale expire/ keys) one revoke_expired() call handles
expire_bucket_seconds = 3600  # width of one expire/<hour>/ folder
salt_bytes_min = 16
REVOCATION_PENDING = -1  # num_uses of a token whose last use is in flight (Vault's tokenRevocationPending)
NOT_RENEWABLE = "lease is not renewable"  # Vault's message (expiration.go), a 400

assert ttl_default_seconds <= ttl_max_seconds
assert token_depth_max >= 1 and expired_revocations_per_pass_max >= 1

_base62 = string.ascii_letters + string.digits


@dataclasses.dataclass
class TokenEntry:
    """What the store keeps for one token, under its salted id. It never holds the token itself."""

    policies: list[str]  # sorted, deduplicated; ["root"] alone when root
    path: str  # the path that created it: "auth/token/create", "auth/token/create-orphan", "auth/token/root"
    display_name: str = "token"
    meta: dict[str, str] | None = None
    num_uses: int = 0  # invariant: 0 = unlimited, > 0 = uses left, REVOCATION_PENDING = last use in flight
    renewable: bool = False
    explicit_max_ttl: int = 0  # seconds, 0 = none; caps every renewal, counted from issue_time
    period: int = 0  # seconds, 0 = none; a periodic token renews to `period` each time
    parent: str = ""  # salted id of the parent; invariant: orphan == (parent == "")
    orphan: bool = True
    type: str = "service"
    accessor: str = ""  # stamped by TokenStore.create
    creation_time: int = 0  # unix seconds, stamped by create
    creation_ttl: int = 0  # the TTL granted at creation (Vault's te.TTL), 0 = never expires
    lease_ttl: int = 0  # the TTL of the latest issue or renewal: what a renewal without increment grants again
    expire_time: float = 0.0  # unix seconds; invariant: 0 (never) exactly when lease_ttl == 0
    issue_time: float = 0.0  # when the lease began; 0 = no lease (the root token made by init)
    last_renewal_time: float = 0.0  # 0 = never renewed

    def encode(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> "TokenEntry":
        return cls(**json.loads(raw))

    def expired(self, now: float) -> bool:
        return bool(self.expire_time) and self.expire_time <= now

    def due(self, now: float) -> bool:
        """Should the expiration manager revoke it?"""
        return self.expired(now) or self.num_uses == REVOCATION_PENDING

    def usable(self, now: float, in_flight: bool = False) -> bool:
        if self.num_uses == REVOCATION_PENDING and not in_flight:
            return False
        return not self.expired(now)

    def ttl(self, now: float) -> int:
        """Whole seconds left, truncated as Vault's lookup shows them; 0 when it never expires."""
        return max(0, int(self.expire_time - now)) if self.expire_time else 0


class TokenStore:
    """Tokens for the core and the `auth/token/` mount. Mutations hold one lock, so a num_uses decrement, a
    renewal or a tree revocation never interleaves with another; lookups take no lock."""

    def __init__(self, view: StorageView, clock: Clock, salt: bytes):
        assert len(salt) >= salt_bytes_min, "the token salt is too short"
        self._view = view
        self.clock = clock
        self._salt = salt
        self._lock = asyncio.Lock()

    def salted(self, value: str) -> str:
        return hmac.new(self._salt, value.encode(), hashlib.sha256).hexdigest()

    # --- creation --------------------------------------------------------------------------------------------

    async def create_root_token(self, token_id: str | None = None) -> tuple[str, TokenEntry]:
        """A root token as init and generate-root make it: policies ["root"], no TTL, no lease, an orphan."""
        entry = TokenEntry(policies=["root"], path="auth/token/root", display_name="root")
        token = await self.create(entry, token_id=token_id, lease=False)
        return token, entry

    async def create(
        self, entry: TokenEntry, parent: str | None = None, token_id: str | None = None, lease: bool = True
    ) -> str:
        """Store a new token for `entry` and return it. `entry` comes without accessor and times (they are
        stamped here) and with `lease_ttl` set. With `parent` (a token) the new one is its child and dies with it;
        a parent that is no longer valid is PermissionDenied. `lease=False` only for root tokens from init."""
        async with self._lock:
            now = self.clock.now()
            token = token_id or token_prefix + random_base62(token_random_chars)
            salted = self.salted(token)
            if await self._view.get(_id_key(salted)) is not None:
                raise InvalidRequest("cannot create a token with a duplicate ID")
            entry.parent, entry.orphan = "", True
            if parent is not None:
                entry.parent, entry.orphan = self.salted(parent), False
                resolved = await self._resolve(entry.parent, now)
                if resolved is None:
                    raise PermissionDenied()
                if resolved[1] + 1 > token_depth_max:
                    raise InvalidRequest(f"a token may have at most {token_depth_max} ancestors")
            entry.accessor = random_base62(accessor_chars)
            entry.creation_time, entry.creation_ttl = int(now), entry.lease_ttl
            entry.issue_time = now if lease else 0.0
            entry.expire_time = now + entry.lease_ttl if entry.lease_ttl else 0.0
            if entry.parent:
                await self._view.put(_parent_key(entry.parent, salted), b"")
            if entry.expire_time:
                await self._view.put(_expire_key(salted, entry.expire_time), b"")
            await self._view.put(_accessor_key(self.salted(entry.accessor)), salted.encode())
            await self._put(salted, entry)
            return token

    # --- lookups ---------------------------------------------------------------------------------------------

    async def lookup(self, token: str) -> TokenEntry | None:
        """The entry of a valid token; None when it is unknown, expired, revoked or used up, or an ancestor is."""
        resolved = await self._resolve(self.salted(token), self.clock.now())
        return resolved[0] if resolved else None

    async def lookup_caller(self, token: str) -> TokenEntry | None:
        """As `lookup`, but also finds a token whose last use is the request in flight. Only for the token that
        authenticated the request being served, after the core has let it through."""
        resolved = await self._resolve(self.salted(token), self.clock.now(), in_flight=True)
        return resolved[0] if resolved else None

    async def lookup_accessor(self, accessor: str) -> TokenEntry | None:
        salted = await self._salted_by_accessor(accessor)
        resolved = await self._resolve(salted, self.clock.now()) if salted else None
        return resolved[0] if resolved else None

    # --- uses and renewals -----------------------------------------------------------------------------------

    async def use(self, token: str) -> TokenEntry | None:
        """Spend one use of a limited-use token. Returns the entry, or None when the token is not valid (the core
        must then refuse the request). On the last use the token becomes revocation-pending: `lookup` no longer
        finds it, `lookup_caller` still does for the request in flight, and the next `revoke_expired()` deletes
        it. The core may call this before or after dispatching the request; before is strict under concurrency."""
        salted = self.salted(token)
        resolved = await self._resolve(salted, self.clock.now())
        if resolved is None or resolved[0].num_uses == 0:
            return resolved[0] if resolved else None
        async with self._lock:
            now = self.clock.now()
            resolved = await self._resolve(salted, now)
            if resolved is None or resolved[0].num_uses == 0:
                return resolved[0] if resolved else None
            entry = resolved[0]
            entry.num_uses -= 1
            if entry.num_uses == 0:
                entry.num_uses = REVOCATION_PENDING
                await self._view.put(_expire_key(salted, now), b"")
            await self._put(salted, entry)
            return entry

    async def renew(self, token: str, increment: int) -> tuple[TokenEntry, list[str]]:
        """Vault's RenewToken: the new TTL and the warnings (capped TTL or period). InvalidRequest when the token
        is not valid, has no lease, is not renewable or is past its max TTL."""
        async with self._lock:
            now = self.clock.now()
            salted = self.salted(token)
            resolved = await self._resolve(salted, now)
            if resolved is None:
                raise InvalidRequest("token not found")
            return await self._renew(salted, resolved[0], increment, now)

    async def renew_accessor(self, accessor: str, increment: int) -> tuple[TokenEntry, list[str]]:
        async with self._lock:
            now = self.clock.now()
            salted = await self._salted_by_accessor(accessor)
            resolved = await self._resolve(salted, now) if salted else None
            if resolved is None:
                raise InvalidRequest("invalid accessor")
            return await self._renew(salted, resolved[0], increment, now)

    async def _renew(self, salted: str, entry: TokenEntry, increment: int, now: float):
        if not entry.issue_time:
            raise InvalidRequest("invalid lease ID")
        if not entry.renewable:
            raise InvalidRequest(NOT_RENEWABLE)
        ttl, warnings = calculate_ttl(
            now, increment, entry.lease_ttl, entry.period, entry.explicit_max_ttl, entry.issue_time
        )
        old_key = _expire_key(salted, entry.expire_time) if entry.expire_time else None
        entry.lease_ttl, entry.expire_time, entry.last_renewal_time = ttl, now + ttl, now
        await self._view.put(_expire_key(salted, entry.expire_time), b"")
        await self._put(salted, entry)
        if old_key and old_key != _expire_key(salted, entry.expire_time):
            await self._view.delete(old_key)
        return entry, warnings

    # --- revocation ------------------------------------------------------------------------------------------

    async def count(self) -> int:
        """How many tokens are stored (a list of `id/`: linear in the number of tokens)."""
        return len(await self._view.list("id/"))

    async def revoke_tree(self, token: str) -> None:
        """Revoke the token and all its descendants. A token that does not exist is not an error."""
        async with self._lock:
            await self._revoke_tree(self.salted(token), budget=None)

    async def revoke_accessor(self, accessor: str) -> bool:
        """Revoke the tree of the token with this accessor; False when no valid token has it."""
        async with self._lock:
            salted = await self._salted_by_accessor(accessor)
            if salted is None or await self._resolve(salted, self.clock.now()) is None:
                return False
            await self._revoke_tree(salted, budget=None)
            return True

    async def revoke_orphan(self, token: str) -> bool:
        """Revoke the token alone; its children become orphans and keep their own TTLs. False when not valid."""
        async with self._lock:
            salted = self.salted(token)
            resolved = await self._resolve(salted, self.clock.now())
            if resolved is None:
                return False
            for child in await self._view.list(_children_prefix(salted)):
                entry = await self._load(child)
                if entry is not None:
                    entry.parent, entry.orphan = "", True
                    await self._put(child, entry)
                await self._view.delete(_parent_key(salted, child))
            await self._delete_token(salted, resolved[0].parent)
            return True

    async def revoke_expired(self) -> int:
        """One pass of the expiration manager: revoke every due token (expired, or its last use spent) with its
        descendants, oldest first. Handles at most `expired_revocations_per_pass_max` tokens or stale keys, and
        returns how many tokens it revoked; call it again until it returns 0 to drain a backlog."""
        async with self._lock:
            now = self.clock.now()
            revoked = work = 0
            for bucket in await self._view.list("expire/"):
                if int(bucket.rstrip("/")) * expire_bucket_seconds > now:
                    break
                for name in await self._view.list("expire/" + bucket):
                    at, _, salted = name.partition(".")
                    if int(at) > now:
                        break
                    if work >= expired_revocations_per_pass_max:
                        return revoked
                    entry = await self._load(salted)
                    if entry is not None and entry.due(now):
                        done = await self._revoke_tree(salted, budget=expired_revocations_per_pass_max - work)
                        revoked, work = revoked + done, work + done
                        if await self._load(salted) is not None:
                            return revoked  # out of budget mid-tree; the root stays queued for the next pass
                    else:
                        work += 1  # renewed since (a stale key) or already gone
                    await self._view.delete(f"expire/{bucket}{name}")
            return revoked

    async def _revoke_tree(self, root: str, budget: int | None) -> int:
        """Delete `root` and its descendants, leaves first, at most `budget` tokens; returns how many."""
        entry = await self._load(root)
        if entry is None:
            return 0
        queued = None
        if not entry.due(self.clock.now()):  # a due token is unusable and queued already
            entry.num_uses = REVOCATION_PENDING  # unusable from now on, its whole tree with it
            queued = _expire_key(root, self.clock.now())  # so a crash mid-tree is finished by the manager
            await self._view.put(queued, b"")
            await self._put(root, entry)
        revoked = 0
        stack, visited = [(root, entry.parent)], {root}
        while stack and (budget is None or revoked < budget):
            salted, parent = stack[-1]
            children = [child for child in await self._view.list(_children_prefix(salted)) if child not in visited]
            if children:
                visited.update(children)
                stack.extend((child, salted) for child in children)
                continue
            stack.pop()
            await self._delete_token(salted, parent)
            revoked += 1
        if queued and not stack:
            await self._view.delete(queued)
        return revoked

    async def _delete_token(self, salted: str, parent: str) -> None:
        """Delete the indexes first and the entry last: the entry is the commit point."""
        entry = await self._load(salted)
        parents = {parent, entry.parent if entry else ""} - {""}
        for each in parents:
            await self._view.delete(_parent_key(each, salted))
        if entry is not None:
            await self._view.delete(_accessor_key(self.salted(entry.accessor)))
            if entry.expire_time:
                await self._view.delete(_expire_key(salted, entry.expire_time))
        await self._view.delete(_id_key(salted))

    # --- storage ---------------------------------------------------------------------------------------------

    async def _resolve(self, salted: str, now: float, in_flight: bool = False) -> tuple[TokenEntry, int] | None:
        """The entry and its number of ancestors, when it and every ancestor are usable; else None."""
        entry = await self._load(salted)
        if entry is None or not entry.usable(now, in_flight):
            return None
        depth, ancestor = 0, entry.parent
        while ancestor:
            depth += 1
            parent = await self._load(ancestor) if depth <= token_depth_max else None
            if parent is None or not parent.usable(now):
                return None
            ancestor = parent.parent
        return entry, depth

    async def _salted_by_accessor(self, accessor: str) -> str | None:
        raw = await self._view.get(_accessor_key(self.salted(accessor)))
        entry = await self._load(raw.decode()) if raw else None
        if entry is None or not hmac.compare_digest(entry.accessor.encode(), accessor.encode()):
            return None
        return raw.decode()

    async def _load(self, salted: str) -> TokenEntry | None:
        raw = await self._view.get(_id_key(salted))
        return TokenEntry.decode(raw) if raw is not None else None

    async def _put(self, salted: str, entry: TokenEntry) -> None:
        await self._view.put(_id_key(salted), entry.encode())

    # --- responses -------------------------------------------------------------------------------------------

    @staticmethod
    def auth_block(token: str, entry: TokenEntry) -> dict:
        """Vault's HTTP `auth` object (HTTPAuth), in its field order; identity_policies is omitted (omitempty)."""
        return {
            "client_token": token,
            "accessor": entry.accessor,
            "policies": list(entry.policies),
            "token_policies": list(entry.policies),
            "metadata": dict(entry.meta) if entry.meta is not None else None,
            "lease_duration": entry.lease_ttl,
            "renewable": entry.renewable,
            "entity_id": "",
            "token_type": entry.type,
            "orphan": entry.orphan,
            "mfa_requirement": None,
            "num_uses": max(entry.num_uses, 0),
        }


def token_backend(store: TokenStore, policy_exists: Callable[[str], Awaitable[bool]] | None = None):
    """The `auth/token/` mount's Backend; built in token_paths.py, which imports this module."""
    from .token_paths import token_backend as build

    return build(store, policy_exists)


def calculate_ttl(
    now: float, increment: int, backend_ttl: int, period: int, explicit_max_ttl: int, start_time: float
) -> tuple[int, list[str]]:
    """Vault's framework.CalculateTTL for the token mount: the TTL to grant and its warnings, in whole seconds.

    A periodic token gets `period` (capped by the max TTL), bounded only by an explicit max TTL. Any other token
    gets `increment`, else `backend_ttl`, else the default, never past `start_time` + the max TTL, where the max
    TTL is the mount's, lowered by `explicit_max_ttl`."""
    now_seconds, start = int(now), int(start_time or now)
    max_ttl = min(ttl_max_seconds, explicit_max_ttl) if explicit_max_ttl > 0 else ttl_max_seconds
    warnings = []
    if period > 0:
        if period > max_ttl:
            warnings.append(
                f'period of "{human_duration(period)}" exceeded the effective max_ttl of '
                f'"{human_duration(max_ttl)}"; period value is capped accordingly'
            )
            period = max_ttl
        ttl, max_valid_time = period, start + explicit_max_ttl if explicit_max_ttl > 0 else None
    else:
        ttl = increment if increment > 0 else backend_ttl if backend_ttl > 0 else ttl_default_seconds
        max_valid_time = start + max_ttl
    if max_valid_time is not None:
        max_valid_ttl = max_valid_time - now_seconds
        if max_valid_ttl <= 0:
            raise InvalidRequest("past the max TTL, cannot renew")
        if max_valid_ttl < ttl:
            warnings.append(
                f'TTL of "{human_duration(ttl)}" exceeded the effective max_ttl of '
                f'"{human_duration(max_valid_ttl)}"; TTL value is capped accordingly'
            )
            ttl = max_valid_ttl
    return ttl, warnings


def human_duration(seconds: int) -> str:
    """Go's Duration.String() trimmed as Vault's humanDuration does: 768h, 1h30m, 1m30s, 45s."""
    if seconds == 0:
        return "0s"
    hours, rest = divmod(seconds, 3600)
    minutes, rest = divmod(rest, 60)
    text = f"{hours}h{minutes}m{rest}s" if hours else f"{minutes}m{rest}s" if minutes else f"{rest}s"
    if text.endswith("m0s"):
        text = text[:-2]
    return text.replace("h0m", "h", 1)


def sanitize_policies(policies: list[str], add_default: bool) -> list[str]:
    """Vault's policyutil.SanitizePolicies: trimmed, lower-case, sorted, unique; root alone; maybe + default."""
    cleaned = [policy.strip().lower() for policy in policies]
    cleaned = [policy for policy in cleaned if policy]
    if "root" in cleaned:
        return ["root"]
    if add_default and "default" not in cleaned:
        cleaned.append("default")
    return sorted(set(cleaned))


def random_base62(length: int) -> str:
    return "".join(secrets.choice(_base62) for _ in range(length))


def _id_key(salted: str) -> str:
    return f"id/{salted}"


def _accessor_key(salted_accessor: str) -> str:
    return f"accessor/{salted_accessor}"


def _children_prefix(salted_parent: str) -> str:
    return f"parent/{salted_parent}/"


def _parent_key(salted_parent: str, salted_child: str) -> str:
    return f"parent/{salted_parent}/{salted_child}"


def _expire_key(salted: str, at: float) -> str:
    # ceil: a key at or before `now` means the token's time has come; zero-padded so names sort by time
    seconds = math.ceil(at)
    return f"expire/{seconds // expire_bucket_seconds:010d}/{seconds:012d}.{salted}"
