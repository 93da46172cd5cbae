"""The `auth/token/` mount: Vault's token endpoints (token_store.go) as declared Paths over a TokenStore.

The calling token: `sdk.Request` carries the caller's accessor and policies but never its token, so the core
puts the token in `request.headers["x-vault-token"]` (that lower-case key) after authenticating it, and the
handlers that need the caller (create, *-self, lookup without a token) resolve it from there with
`TokenStore.lookup_caller`; a missing or invalid one is PermissionDenied. The mount's storage view is unused:
tokens live in the store's own view.

Sudo: Vault wants root or sudo for `no_parent`, `period`, `id`, and for child policies that are not a subset of
the parent's. An engine cannot see the ACL, so here the parent must hold the root policy, which is stricter than
Vault for a non-root token with sudo on auth/token/create. revoke-orphan is left to the core's sudo paths, as
Vault's PathsSpecial.Root does.
"""

import dataclasses
import datetime
import re
from collections.abc import Awaitable, Callable

from ..sdk.backend import Backend
from ..sdk.errors import InvalidRequest, PermissionDenied
from ..sdk.path import Field, FieldData, FieldType, Path
from ..sdk.request import Operation, Request, Response
from .tokens import TokenEntry, TokenStore, calculate_ttl, sanitize_policies

CALLER_TOKEN_HEADER = "x-vault-token"
non_assignable_policies = ("response-wrapping", "control-group")
_display_name_unsafe = re.compile(r"[^a-zA-Z0-9-]")

PolicyExists = Callable[[str], Awaitable[bool]]


@dataclasses.dataclass
class CreateSpec:
    """The body of auth/token/create, parsed and checked. Durations in seconds."""

    policies: list[str]
    meta: dict[str, str] | None
    no_parent: bool
    no_default_policy: bool
    ttl: int
    explicit_max_ttl: int
    period: int
    num_uses: int
    renewable: bool
    display_name: str
    token_id: str


class TokenPaths:
    """The handlers. `policy_exists` (optional) lets create warn `Policy "x" does not exist` as Vault does."""

    def __init__(self, store: TokenStore, policy_exists: PolicyExists | None = None):
        self.store = store
        self.policy_exists = policy_exists

    async def caller(self, request: Request) -> tuple[str, TokenEntry]:
        token = request.headers.get(CALLER_TOKEN_HEADER, "")
        entry = await self.store.lookup_caller(token) if token else None
        if entry is None:
            raise PermissionDenied()
        return token, entry

    # --- create ----------------------------------------------------------------------------------------------

    async def create(self, request: Request, fields: FieldData) -> Response:
        return await self._create(request, fields, orphan=False)

    async def create_orphan(self, request: Request, fields: FieldData) -> Response:
        return await self._create(request, fields, orphan=True)

    async def _create(self, request: Request, fields: FieldData, orphan: bool) -> Response:
        parent_token, parent = await self.caller(request)
        if parent.num_uses != 0:
            raise InvalidRequest("restricted use token cannot generate child tokens")
        spec = parse_create(fields)
        privileged = "root" in parent.policies  # stands in for Vault's root-or-sudo; see the module docstring
        policies = child_policies(parent.policies, spec, privileged)
        if spec.no_parent and not privileged:
            raise InvalidRequest("root or sudo privileges required to create orphan token")
        if spec.period and not privileged:
            raise InvalidRequest("root or sudo privileges required to create periodic token")
        if spec.token_id:
            check_custom_id(spec.token_id, privileged)
        lease_ttl, renewable, warnings = token_lifetime(spec, policies, parent, self.store.clock.now())
        entry = TokenEntry(
            policies=policies,
            path=f"auth/token/{request.path}",
            display_name=display_name(spec.display_name),
            meta=spec.meta,
            num_uses=spec.num_uses,
            renewable=renewable,
            explicit_max_ttl=spec.explicit_max_ttl,
            period=spec.period,
            lease_ttl=lease_ttl,
        )
        child_of = None if orphan or spec.no_parent else parent_token
        token = await self.store.create(entry, parent=child_of, token_id=spec.token_id or None)
        if self.policy_exists is not None:
            warnings += [f'Policy "{name}" does not exist' for name in policies if not await self.policy_exists(name)]
        return Response(auth=self.store.auth_block(token, entry), warnings=warnings)

    # --- lookup ----------------------------------------------------------------------------------------------

    async def lookup(self, request: Request, fields: FieldData) -> Response:
        token = fields.get("token")
        if token:
            entry = await self.store.lookup(token)
        else:
            token, entry = await self.caller(request)
        if entry is None:
            raise PermissionDenied("bad token")
        return Response(data=lookup_data(token, entry, self.store.clock.now()))

    async def lookup_self(self, request: Request, fields: FieldData) -> Response:
        token, entry = await self.caller(request)
        return Response(data=lookup_data(token, entry, self.store.clock.now()))

    async def lookup_accessor(self, request: Request, fields: FieldData) -> Response:
        entry = await self.store.lookup_accessor(_required(fields, "accessor", "missing accessor"))
        if entry is None:
            raise InvalidRequest("invalid accessor")
        return Response(data=lookup_data("", entry, self.store.clock.now()))

    # --- renew -----------------------------------------------------------------------------------------------

    async def renew(self, request: Request, fields: FieldData) -> Response:
        token = _required(fields, "token", "missing token ID")
        entry, warnings = await self.store.renew(token, fields.get("increment"))
        return Response(auth=self.store.auth_block(token, entry), warnings=warnings)

    async def renew_self(self, request: Request, fields: FieldData) -> Response:
        token, _ = await self.caller(request)
        entry, warnings = await self.store.renew(token, fields.get("increment"))
        return Response(auth=self.store.auth_block(token, entry), warnings=warnings)

    async def renew_accessor(self, request: Request, fields: FieldData) -> Response:
        accessor = _required(fields, "accessor", "missing accessor")
        entry, warnings = await self.store.renew_accessor(accessor, fields.get("increment"))
        return Response(auth=self.store.auth_block("", entry), warnings=warnings)

    # --- revoke ----------------------------------------------------------------------------------------------

    async def revoke(self, request: Request, fields: FieldData) -> None:
        await self.store.revoke_tree(_required(fields, "token", "missing token ID"))

    async def revoke_self(self, request: Request, fields: FieldData) -> None:
        token, _ = await self.caller(request)
        await self.store.revoke_tree(token)

    async def revoke_accessor(self, request: Request, fields: FieldData) -> None:
        if not await self.store.revoke_accessor(_required(fields, "accessor", "missing accessor")):
            raise InvalidRequest("invalid accessor")

    async def revoke_orphan(self, request: Request, fields: FieldData) -> None:
        if not await self.store.revoke_orphan(_required(fields, "token", "missing token ID")):
            raise InvalidRequest("token to revoke not found")


def token_backend(store: TokenStore, policy_exists: PolicyExists | None = None) -> Backend:
    handlers = TokenPaths(store, policy_exists)
    token = {"token": Field(FieldType.STRING, "the token")}
    accessor = {"accessor": Field(FieldType.STRING, "the token's accessor")}
    increment = {"increment": Field(FieldType.DURATION, "the TTL to ask for, from now", default=0)}
    read, update = Operation.READ, Operation.UPDATE
    return Backend(
        [
            Path("create", create_fields, {update: handlers.create}, help="Create a child token."),
            Path("create-orphan", create_fields, {update: handlers.create_orphan}, help="Create an orphan token."),
            Path("lookup", token, {read: handlers.lookup, update: handlers.lookup}, help="Look up a token."),
            Path("lookup-self", {}, {read: handlers.lookup_self, update: handlers.lookup_self}, help="Look up self."),
            Path("lookup-accessor", accessor, {update: handlers.lookup_accessor}, help="Look up by accessor."),
            Path("renew", {**token, **increment}, {update: handlers.renew}, help="Renew a token."),
            Path("renew-self", increment, {update: handlers.renew_self}, help="Renew the calling token."),
            Path("renew-accessor", {**accessor, **increment}, {update: handlers.renew_accessor}, help="Renew."),
            Path("revoke", token, {update: handlers.revoke}, help="Revoke a token and its descendants."),
            Path("revoke-self", {}, {update: handlers.revoke_self}, help="Revoke the calling token and its tree."),
            Path("revoke-accessor", accessor, {update: handlers.revoke_accessor}, help="Revoke by accessor."),
            Path("revoke-orphan", token, {update: handlers.revoke_orphan}, help="Revoke; orphan its children."),
        ],
        help="The token store: create, look up, renew and revoke tokens.",
    )


create_fields = {
    "id": Field(FieldType.STRING, "a custom token ID (root only)", default=""),
    "policies": Field(FieldType.STRING_LIST, "policies; the parent's when none", default=[]),
    "meta": Field(FieldType.MAP, "string metadata", default=None),
    "no_parent": Field(FieldType.BOOL, "make an orphan (root only)", default=False),
    "no_default_policy": Field(FieldType.BOOL, "do not add the default policy", default=False),
    "ttl": Field(FieldType.DURATION, "the initial TTL", default=0),
    "explicit_max_ttl": Field(FieldType.DURATION, "a hard cap on the TTL across renewals", default=0),
    "period": Field(FieldType.DURATION, "renew to this TTL each time (root only)", default=0),
    "num_uses": Field(FieldType.INT, "uses before the token is revoked; 0 = unlimited", default=0),
    "renewable": Field(FieldType.BOOL, "whether the token may be renewed", default=True),
    "display_name": Field(FieldType.STRING, "a name shown as token-<name>", default=""),
    "type": Field(FieldType.STRING, "service (batch tokens are not supported)", default="service"),
}


def parse_create(fields: FieldData) -> CreateSpec:
    if fields.get("type") not in ("", "service"):
        message = "batch tokens are not supported" if fields.get("type") == "batch" else "invalid 'token_type' value"
        raise InvalidRequest(message)
    if fields.get("num_uses") < 0:
        raise InvalidRequest("number of uses cannot be negative")
    for name in ("ttl", "explicit_max_ttl", "period"):
        if fields.get(name) < 0:
            raise InvalidRequest(f"{name} must be positive")
    return CreateSpec(
        policies=list(fields.get("policies")),
        meta=parse_meta(fields.get("meta")),
        no_parent=fields.get("no_parent"),
        no_default_policy=fields.get("no_default_policy"),
        ttl=fields.get("ttl"),
        explicit_max_ttl=fields.get("explicit_max_ttl"),
        period=fields.get("period"),
        num_uses=fields.get("num_uses"),
        renewable=fields.get("renewable"),
        display_name=fields.get("display_name"),
        token_id=fields.get("id"),
    )


def parse_meta(meta: dict | None) -> dict[str, str] | None:
    if meta is None:
        return None
    if not all(isinstance(value, str | int | float) and not isinstance(value, bool) for value in meta.values()):
        raise InvalidRequest("meta values must be strings")
    return {str(key): str(value) for key, value in meta.items()}


def child_policies(parent_policies: list[str], spec: CreateSpec, privileged: bool) -> list[str]:
    """handleCreateCommon's policy rules, without roles. Raises InvalidRequest as Vault does."""
    add_default = False
    policies = spec.policies
    if not policies:
        policies = sanitize_policies(parent_policies, add_default=False)  # inherit; default only if the parent has it
    elif not privileged:
        wanted = set(sanitize_policies(policies, add_default=False))
        if not wanted <= set(sanitize_policies(parent_policies, add_default=False)):
            raise InvalidRequest("child policies must be subset of parent")
        add_default = not spec.no_default_policy and "default" in parent_policies
    else:
        add_default = not spec.no_default_policy
    result = sanitize_policies(policies, add_default)
    if spec.no_default_policy:
        result = [policy for policy in result if policy != "default"]
    for policy in result:
        if policy in non_assignable_policies:
            raise InvalidRequest(f'cannot assign policy "{policy}"')
    if "root" in result and "root" not in parent_policies:
        raise InvalidRequest("root tokens may not be created without parent token being root")
    return result


def token_lifetime(spec: CreateSpec, policies: list[str], parent: TokenEntry, now: float):
    """(lease TTL, renewable, warnings) for a new token: default 768h, capped by the max and explicit max TTL;
    a periodic token gets its period; a root token without ttl never expires and is not renewable."""
    ttl, renewable, warnings = spec.ttl, spec.renewable, []
    if spec.period > 0 or spec.ttl > 0 or "root" not in policies:
        ttl, warnings = calculate_ttl(now, 0, spec.ttl, spec.period, spec.explicit_max_ttl, now)
    if ttl == 0 and spec.explicit_max_ttl > 0:
        ttl = spec.explicit_max_ttl  # root tokens are still bound by an explicit max TTL
    if ttl == 0:
        if parent.creation_ttl != 0:
            raise InvalidRequest("expiring root tokens cannot create non-expiring root tokens")
        renewable = False
    return ttl, renewable, warnings


def check_custom_id(token_id: str, privileged: bool) -> None:
    if not privileged:
        raise InvalidRequest("root or sudo privileges required to specify token id")
    for prefix in ("hvs.", "s.", "hvb.", "b."):
        if token_id.startswith(prefix):
            raise InvalidRequest(f"custom token ID cannot have the '{prefix}' prefix")
    if "." in token_id:
        raise InvalidRequest("custom token ID cannot have a '.' in the value")


def display_name(name: str) -> str:
    if not name:
        return "token"
    return _display_name_unsafe.sub("-", f"token-{name}").removesuffix("-")


def lookup_data(token: str, entry: TokenEntry, now: float) -> dict:
    """handleLookup's `data`, keys sorted as Go marshals a map. `token` is "" for lookup-accessor. A token
    without a lease (the root token from init) has no `renewable` or `issue_time`, as in Vault."""
    data = {
        "accessor": entry.accessor,
        "creation_time": entry.creation_time,
        "creation_ttl": entry.creation_ttl,
        "display_name": entry.display_name,
        "entity_id": "",
        "expire_time": rfc3339(entry.expire_time) if entry.expire_time else None,
        "explicit_max_ttl": entry.explicit_max_ttl,
        "id": token,
        "meta": dict(entry.meta) if entry.meta is not None else None,
        "num_uses": max(entry.num_uses, 0),
        "orphan": entry.orphan,
        "path": entry.path,
        "policies": list(entry.policies),
        "ttl": entry.ttl(now),
        "type": entry.type,
    }
    if entry.period:
        data["period"] = entry.period
    if entry.issue_time:
        if entry.last_renewal_time:
            data["last_renewal"] = rfc3339(entry.last_renewal_time)
            data["last_renewal_time"] = int(entry.last_renewal_time)
        data["renewable"] = entry.renewable and not entry.expired(now)
        data["issue_time"] = rfc3339(entry.issue_time)
    return dict(sorted(data.items()))


def rfc3339(timestamp: float) -> str:
    """Go's RFC3339Nano as time.Time marshals it, in UTC: fraction without trailing zeros, none when whole."""
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += "." + f"{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def _required(fields: FieldData, name: str, message: str) -> str:
    value = fields.get(name)
    if not value:
        raise InvalidRequest(message)
    return value
