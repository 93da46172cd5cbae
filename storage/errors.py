"""Errors of the storage engine.

    StorageError
    ├── InvalidBatch            the apply batch is malformed; nothing was written
    │   ├── KeyTooLarge
    │   ├── ValueTooLarge
    │   └── IndexNotMonotonic
    ├── StoreLocked             another process (or handle) holds the data dir
    ├── StoreClosed             the handle was closed
    ├── StoreFailed             a write or fsync failed; the store refuses writes until reopened
    ├── CorruptionError         a file fails its checksum or framing; names file and offset
    └── SnapshotError           a snapshot stream is truncated or fails its checksum; old state stays live

Operating errors (bad input, full disk) are these classes. Programmer errors are assertions.
"""


class StorageError(Exception):
    """Base class of every error the storage engine raises on purpose."""


class InvalidBatch(StorageError):
    """The batch given to `apply` is malformed. Nothing was written."""


class KeyTooLarge(InvalidBatch):
    """A key is longer than `limits.key_bytes_max` bytes of UTF-8."""


class ValueTooLarge(InvalidBatch):
    """A value is longer than `limits.value_bytes_max` bytes."""


class IndexNotMonotonic(InvalidBatch):
    """The Raft index of a batch is not above the store's applied index."""

    def __init__(self, index: int, applied_index: int):
        super().__init__(f"raft index {index} is not above the applied index {applied_index}")
        self.index = index
        self.applied_index = applied_index


class StoreLocked(StorageError):
    """Another process, or another handle in this one, has the data dir open."""


class StoreClosed(StorageError):
    """The store was closed. You don't get this from a store that failed; see `StoreFailed`."""


class StoreFailed(StorageError):
    """A write or an fsync failed. The store never retries an fsync: it refuses writes until reopened."""


class CorruptionError(StorageError):
    """A file is corrupt where a torn tail cannot explain it. Open refuses; nothing is skipped."""

    def __init__(self, path: str, offset: int, reason: str):
        super().__init__(f"{path} at offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


class SnapshotError(StorageError):
    """A snapshot stream is truncated, reordered or fails its checksum. The old state stays live."""
