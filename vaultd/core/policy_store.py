"""ACL policies kept in the barrier (one key per policy under `sys/policy/`), parsed once and cached.

`default` always exists (written at first use from Vault's default policy text) and cannot be deleted;
`root` is built in and cannot be written. The cache is dropped for a name whenever that name is written or
deleted through this store, the only writer.
"""

import base64
import binascii

from ..sdk.errors import InvalidRequest, NotFound
from ..sdk.storage import StorageView
from .policy import (
    ACL,
    DEFAULT_POLICY_HCL,
    RESPONSE_WRAPPING_POLICY_HCL,
    ROOT_POLICY,
    Policy,
    check_policy_deletable,
    check_policy_writable,
    normalize_policy_name,
    parse_policy,
)

acl_cache_entries_max = 1024  # distinct policy sets kept built; beyond it the cache starts over


class PolicyStore:
    def __init__(self, view: StorageView):
        self.view = view
        self._cache: dict[str, Policy] = {}
        self._acls: dict[tuple[str, ...], ACL] = {}  # built ACLs by policy names; dropped on any write

    async def names(self) -> list[str]:
        names = set(await self.view.list("")) | {"default"}
        return sorted(names)

    async def get(self, name: str) -> Policy | None:
        name = normalize_policy_name(name)
        if name == "root":
            return ROOT_POLICY
        if name in self._cache:
            return self._cache[name]
        raw = await self.view.get(name) if name != "response-wrapping" else RESPONSE_WRAPPING_POLICY_HCL.encode()
        if raw is None and name == "default":
            raw = DEFAULT_POLICY_HCL.encode()
        if raw is None:
            return None
        policy = parse_policy(name, raw.decode())
        self._cache[name] = policy
        return policy

    async def put(self, name: str, text: str) -> None:
        name = normalize_policy_name(name)
        if not text or not text.strip():
            raise InvalidRequest("'policy' parameter not supplied or empty")
        text = _maybe_base64(text)
        parse_policy(name, text)  # as Vault: a text that does not parse is refused before any name check
        check_policy_writable(name)
        await self.view.put(name, text.encode())
        self._cache.pop(name, None)
        self._acls.clear()

    async def delete(self, name: str) -> None:
        check_policy_deletable(name)
        name = normalize_policy_name(name)
        await self.view.delete(name)
        self._cache.pop(name, None)
        self._acls.clear()

    def invalidate(self, name: str) -> None:
        """Another node changed the policy `name`: forget its parsed form and every ACL built from it."""
        self._cache.pop(name, None)
        self._acls.clear()

    async def read(self, name: str) -> Policy:
        policy = await self.get(name)
        if policy is None:
            raise NotFound()
        return policy

    async def acl(self, names: list[str]) -> ACL:
        """The ACL of these policies; an ACL never changes after it is built, so it is shared until a write."""
        key = tuple(sorted(normalize_policy_name(name) for name in names))
        acl = self._acls.get(key)
        if acl is None:
            policies = [policy for policy in [await self.get(name) for name in key] if policy is not None]
            if len(self._acls) >= acl_cache_entries_max:
                self._acls.clear()
            acl = self._acls[key] = ACL(policies)
        return acl


def _maybe_base64(text: str) -> str:
    """Vault accepts a policy sent as standard base64 and decodes it first."""
    try:
        decoded = base64.b64decode(text, validate=True).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return text
    return decoded
