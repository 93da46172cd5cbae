"""Response wrapping: a response replaced by a single-use token that can be unwrapped once, within its TTL.

The wrapping token is an orphan service token with the `response-wrapping` policy, one use and a TTL (also
its explicit max TTL) of the requested wrap TTL. The wrapped response is kept under the token's salted id in
this store's view, through the barrier, and deleted when unwrapped: a second unwrap finds nothing.
"""

import dataclasses
import json

from ..clock import Clock
from ..sdk.backend import parse_duration
from ..sdk.errors import InvalidRequest
from ..sdk.request import Response
from ..sdk.storage import StorageView
from .keyring import format_rfc3339
from .tokens import TokenEntry, TokenStore

WRAPPING_POLICY = "response-wrapping"
INVALID = "wrapping token is not valid or does not exist"


def parse_wrap_ttl(header: str | None) -> int | None:
    """Seconds from an X-Vault-Wrap-TTL header, None when absent; bad or negative values are a 400."""
    if header is None or header == "":
        return None
    text = header.strip()
    if text.startswith("-"):
        raise InvalidRequest("error parsing X-Vault-Wrap-TTL header: requested wrap ttl cannot be negative")
    try:
        seconds = parse_duration(text)
    except (TypeError, ValueError):
        raise InvalidRequest(f"error parsing X-Vault-Wrap-TTL header: invalid duration {text!r}") from None
    if seconds <= 0:
        raise InvalidRequest("error parsing X-Vault-Wrap-TTL header: requested wrap ttl cannot be zero")
    return seconds


class Wrapping:
    def __init__(self, view: StorageView, tokens: TokenStore, clock: Clock):
        self.view = view
        self.tokens = tokens
        self.clock = clock

    async def wrap(self, response: Response, ttl: int, creation_path: str) -> dict:
        entry = TokenEntry(policies=[WRAPPING_POLICY], path=creation_path, display_name="response-wrapping",
                           num_uses=1, lease_ttl=ttl, explicit_max_ttl=ttl, renewable=False)
        token = await self.tokens.create(entry)
        now = self.clock.now()
        stored = {"response": dataclasses.asdict(response), "creation_path": creation_path,
                  "creation_time": now, "creation_ttl": ttl}
        await self.view.put(self.tokens.salted(token), json.dumps(stored).encode())
        info = {"token": token, "accessor": entry.accessor, "ttl": ttl, "creation_time": _time(now),
                "creation_path": creation_path}
        if response.auth and response.auth.get("accessor"):
            info["wrapped_accessor"] = response.auth["accessor"]
        return info

    async def unwrap(self, token: str, in_flight: bool) -> Response:
        stored = await self._stored(token, in_flight)
        await self.view.delete(self.tokens.salted(token))
        await self.tokens.revoke_tree(token)
        return Response(**stored["response"])

    async def lookup(self, token: str) -> dict:
        stored = await self._stored(token, in_flight=False)
        return {"creation_path": stored["creation_path"], "creation_time": _time(stored["creation_time"]),
                "creation_ttl": stored["creation_ttl"]}

    async def rewrap(self, token: str, in_flight: bool) -> dict:
        stored = await self._stored(token, in_flight)
        response = Response(**stored["response"])
        info = await self.wrap(response, stored["creation_ttl"], stored["creation_path"])
        await self.view.delete(self.tokens.salted(token))
        await self.tokens.revoke_tree(token)
        return info

    async def _stored(self, token: str, in_flight: bool) -> dict:
        if not token:
            raise InvalidRequest(INVALID)
        entry = await (self.tokens.lookup_caller(token) if in_flight else self.tokens.lookup(token))
        raw = await self.view.get(self.tokens.salted(token)) if entry else None
        if entry is None or entry.policies != [WRAPPING_POLICY] or raw is None:
            raise InvalidRequest(INVALID)
        return json.loads(raw)


def _time(seconds: float) -> str:
    """Go's RFC3339Nano, as Vault prints lease and wrapping times."""
    return format_rfc3339(round(seconds * 1_000_000_000))
