"""MemoryBackend: the store's behaviour in a dict, for unit tests of the layers above. Not durable.

It refuses the same input as LogStore (same validation, same errors) and speaks the same snapshot stream,
and the conformance suite in tests/storage runs against both.
"""

import threading
from collections.abc import Iterable
from typing import BinaryIO

from sortedcontainers import SortedDict

from . import snapshot
from .batch import Op, validate_ops
from .errors import IndexNotMonotonic, StoreClosed
from .index import list_children


class MemoryBackend:
    def __init__(self) -> None:
        self._values: SortedDict = SortedDict()
        self._lock = threading.Lock()
        self._applied_index = 0
        self._applied_term = 0
        self._closed = False

    def apply(self, index: int, ops: Iterable[Op], term: int = 0) -> None:
        checked = validate_ops(ops)
        with self._lock:
            self._check_open()
            if index <= self._applied_index:
                raise IndexNotMonotonic(index, self._applied_index)
            for op, key, value in checked:
                if op == "put":
                    self._values[key] = value
                else:
                    self._values.pop(key, None)
            self._applied_index, self._applied_term = index, term

    def get(self, key: str) -> bytes | None:
        with self._lock:
            self._check_open()
            return self._values.get(key)

    def list(self, prefix: str) -> list[str]:
        with self._lock:
            self._check_open()
            return list_children(self._values, prefix)

    @property
    def applied_index(self) -> int:
        return self._applied_index

    @property
    def applied_term(self) -> int:
        return self._applied_term

    def __len__(self) -> int:
        return len(self._values)

    def export_snapshot(self, fileobj: BinaryIO) -> int:
        with self._lock:
            self._check_open()
            items = list(self._values.items())
            index, term = self._applied_index, self._applied_term
        return snapshot.write_stream(fileobj, index, term, len(items), items)

    def restore(self, fileobj: BinaryIO) -> None:
        reader = snapshot.StreamReader(fileobj)
        values = SortedDict()
        for chunk in reader.chunks():
            values.update(chunk)
        with self._lock:
            self._check_open()
            self._values = values
            self._applied_index, self._applied_term = reader.index, reader.term

    def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("the store is closed")
