"""storage/: the sealed, log-structured store. Stdlib, msgpack and sortedcontainers only; never plaintext.

Public surface: `LogStore`, `MemoryBackend`, the `Backend` protocol and the errors in `storage.errors`.
"""

from .backend import Backend
from .errors import (
    CorruptionError,
    IndexNotMonotonic,
    InvalidBatch,
    KeyTooLarge,
    SnapshotError,
    StorageError,
    StoreClosed,
    StoreFailed,
    StoreLocked,
    ValueTooLarge,
)
from .log_store import LogStore
from .memory import MemoryBackend

__all__ = [
    "Backend",
    "CorruptionError",
    "IndexNotMonotonic",
    "InvalidBatch",
    "KeyTooLarge",
    "LogStore",
    "MemoryBackend",
    "SnapshotError",
    "StorageError",
    "StoreClosed",
    "StoreFailed",
    "StoreLocked",
    "ValueTooLarge",
]
