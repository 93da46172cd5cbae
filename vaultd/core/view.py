"""BarrierView: the StorageView an engine gets, confined below one prefix of the barrier.

Every key is checked before it is joined to the prefix, so no key names anything outside it. As Vault's
view does, a key containing '..' anywhere is refused ("relative paths not supported"); so is a key that
starts with '/', which would otherwise escape into a sibling once a prefix is joined.
"""

from __future__ import annotations

from vaultd.sdk.errors import InvalidRequest

from .barrier import Barrier


class BarrierView:
    # invariant: `prefix` ends with '/', does not start with '/' and holds no '..'
    def __init__(self, barrier: Barrier, prefix: str):
        _check_relative(prefix)
        if not prefix.endswith("/"):
            raise InvalidRequest(f"a view prefix must end with '/': {prefix!r}")
        self._barrier = barrier
        self.prefix = prefix

    async def get(self, key: str) -> bytes | None:
        return await self._barrier.get(self._path(key))

    async def put(self, key: str, value: bytes) -> None:
        await self._barrier.put(self._path(key), value)

    async def delete(self, key: str) -> None:
        await self._barrier.delete(self._path(key))

    async def transaction(self, ops: list[tuple[str, str, bytes | None]]) -> None:
        """Atomically, in one storage write (one raft entry in a cluster)."""
        if any(op not in ("put", "delete") for op, _, _ in ops):
            raise InvalidRequest("a transaction holds only put and delete ops")
        await self._barrier.transaction([(op, self._path(key), value) for op, key, value in ops])

    async def list(self, prefix: str) -> list[str]:
        """Immediate children of `prefix` (relative to this view); folders end in '/'."""
        _check_relative(prefix)
        return await self._barrier.list(self.prefix + prefix)

    def sub_view(self, prefix: str) -> BarrierView:
        """A view of `prefix` inside this one, e.g. a mount handing `config/` to a helper."""
        return BarrierView(self._barrier, self.prefix + _key(prefix))

    def _path(self, key: str) -> str:
        return self.prefix + _key(key)


def _key(key: str) -> str:
    _check_relative(key)
    if not key:
        raise InvalidRequest("the key must not be empty")
    return key


def _check_relative(key: str) -> None:
    assert isinstance(key, str), f"a storage key is a str, not {type(key)}"
    if ".." in key:
        raise InvalidRequest(f"relative paths not supported: {key!r}")
    if key.startswith("/"):
        raise InvalidRequest(f"a key must not start with '/': {key!r}")
