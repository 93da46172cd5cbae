"""The Backend protocol: what the layers above may ask of a store. LogStore and MemoryBackend implement it."""

from collections.abc import Iterable
from typing import BinaryIO, Protocol

from .batch import Op


class Backend(Protocol):
    def apply(self, index: int, ops: Iterable[Op], term: int = 0) -> None:
        """Apply one Raft entry atomically; `ops` is [(\"put\"|\"delete\", key, bytes|None)]."""

    def get(self, key: str) -> bytes | None: ...

    def list(self, prefix: str) -> list[str]:
        """Immediate children of `prefix`; folders end in '/'."""

    @property
    def applied_index(self) -> int: ...

    @property
    def applied_term(self) -> int: ...

    def export_snapshot(self, fileobj: BinaryIO) -> int: ...

    def restore(self, fileobj: BinaryIO) -> None: ...

    def close(self) -> None: ...
