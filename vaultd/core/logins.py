"""Turning an auth method's login answer into a token, as Vault's core does for every credential backend.

An auth backend's login handler returns `Response(auth=spec)`, where `spec` describes the token: policies,
metadata, display_name, ttl, max_ttl, explicit_max_ttl, period, num_uses, renewable, no_default_policy. The core
creates an orphan service token for it, registers a lease for it, and answers with Vault's `auth` block.
"""

from ..sdk.errors import InvalidRequest
from ..sdk.request import Response
from .leases import LeaseStore
from .tokens import TokenEntry, TokenStore, sanitize_policies, ttl_default_seconds, ttl_max_seconds


def login_entry(spec: dict, path: str) -> TokenEntry:
    """The token a login spec asks for; TTLs default to the mount's (768h) and are capped by max_ttl.

    What this server cannot honour is refused rather than silently dropped: batch tokens and CIDR-bound tokens.
    """
    if spec.get("token_type") == "batch":
        raise InvalidRequest("batch tokens are not supported by this server")
    if spec.get("bound_cidrs"):
        raise InvalidRequest("token_bound_cidrs is not supported by this server")
    period = int(spec.get("period") or 0)
    max_ttl = int(spec.get("max_ttl") or 0) or ttl_max_seconds
    explicit_max = int(spec.get("explicit_max_ttl") or 0)
    cap = min(max_ttl, explicit_max) if explicit_max else max_ttl
    ttl = period or min(int(spec.get("ttl") or 0) or ttl_default_seconds, cap)
    return TokenEntry(
        policies=sanitize_policies(list(spec.get("policies") or []), not spec.get("no_default_policy")),
        path=path,
        display_name=spec.get("display_name") or "token",
        meta={str(k): str(v) for k, v in (spec.get("metadata") or {}).items()} or None,
        num_uses=int(spec.get("num_uses") or 0),
        renewable=bool(spec.get("renewable", True)),
        explicit_max_ttl=cap if cap != ttl_max_seconds or explicit_max else 0,
        period=period,
        lease_ttl=ttl,
    )


async def issue_login_token(tokens: TokenStore, leases: LeaseStore, response: Response, path: str) -> Response:
    entry = login_entry(response.auth, path)
    token = await tokens.create(entry)
    await leases.register_login(path, entry.accessor)
    return Response(data=response.data, warnings=response.warnings, auth=tokens.auth_block(token, entry))
