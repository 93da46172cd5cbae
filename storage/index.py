"""The in-memory index: where each live key's value is, in key order, and which tombstones still matter.

Values stay on disk; the page cache caches them. The index holds, per live key, one int location (see
`segment.pack_location`) in a dict, the key once more in a SortedList for prefix listing, and per segment
the bytes its live records take, so compaction knows how much of each segment is dead.
"""

import collections
from collections.abc import Sequence

from sortedcontainers import SortedList

from .segment import length_bits

record_overhead_bytes = 16  # framing and msgpack bytes per op, near enough for dead-byte accounting
_length_mask = (1 << length_bits) - 1


def location_bytes(key: str, location: int) -> int:
    return len(key) + (location & _length_mask) + record_overhead_bytes


def tombstone_bytes(key: str) -> int:
    return len(key) + record_overhead_bytes


class Index:
    """Not thread-safe: the store guards it with its state lock."""

    def __init__(self) -> None:
        self.locations: dict[str, int] = {}
        self.keys = SortedList()
        # key -> (raft_index, segment_id) of the delete that is the key's newest record
        self.tombstones: dict[str, tuple[int, int]] = {}
        # segment_id -> bytes of its live records; None until first asked for (counting costs ~0.3 s per 1M
        # keys, which open does not pay). Once counted, every change keeps it current.
        self._live_bytes: collections.Counter[int] | None = collections.Counter()
        self._loaded_index_max = 0  # while opening: the newest raft index loaded so far

    @property
    def live_bytes(self) -> collections.Counter[int]:
        if self._live_bytes is None:
            self._live_bytes = self._count_live_bytes()
        return self._live_bytes

    def put(self, key: str, location: int) -> None:
        locations, live = self.locations, self._live_bytes
        old = locations.get(key)
        if old is None:
            self._forget_tombstone(key)
            self.keys.add(key)
        elif live is not None:
            live[old >> 52] -= len(key) + (old & _length_mask) + record_overhead_bytes
        locations[key] = location
        if live is not None:
            live[location >> 52] += len(key) + (location & _length_mask) + record_overhead_bytes

    def delete(self, key: str, raft_index: int, segment_id: int) -> None:
        old = self.locations.pop(key, None)
        if old is None:
            self._forget_tombstone(key)
        else:
            self.keys.remove(key)
            self._add(old >> 52, -location_bytes(key, old))
        self.tombstones[key] = (raft_index, segment_id)
        self._add(segment_id, tombstone_bytes(key))

    def _forget_tombstone(self, key: str) -> None:
        tombstone = self.tombstones.pop(key, None)
        if tombstone is not None:
            self._add(tombstone[1], -tombstone_bytes(key))

    def _add(self, segment_id: int, size: int) -> None:
        if self._live_bytes is not None:
            self._live_bytes[segment_id] += size

    def move(self, key: str, old_location: int, new_location: int) -> bool:
        """Compare-and-set for compaction: repoint the key only if it still points at `old_location`."""
        if self.locations.get(key) != old_location:
            return False
        self._add(old_location >> 52, -location_bytes(key, old_location))
        self._add(new_location >> 52, location_bytes(key, new_location))
        self.locations[key] = new_location
        return True

    def move_tombstone(self, key: str, old: tuple[int, int], new_segment_id: int | None) -> None:
        """Compare-and-set for compaction: rehome a tombstone, or drop it when `new_segment_id` is None."""
        if self.tombstones.get(key) != old:
            return
        self._add(old[1], -tombstone_bytes(key))
        if new_segment_id is None:
            del self.tombstones[key]
        else:
            self.tombstones[key] = (old[0], new_segment_id)
            self._add(new_segment_id, tombstone_bytes(key))

    def list(self, prefix: str) -> list[str]:
        return list_children(self.keys, prefix)

    def load(
        self,
        segment_id: int,
        keys: Sequence[str],
        indexes: Sequence[int],
        locations: Sequence[int | None],
        sequence: dict[str, int] | None,
    ) -> None:
        """Merge one segment's entries at open: the newest raft index of each key wins.

        `sequence` (key -> raft index of its newest record) lives only while the store opens. Compaction
        copies keep their original raft index, so a segment's id alone does not say which record is newer.
        Within a segment, a later entry of the same index wins (the later op of one batch).
        """
        if sequence is None or (indexes and min(indexes) >= self._loaded_index_max and None not in locations):
            self._load_newer(segment_id, keys, indexes, locations, sequence)
            return
        index_locations = self.locations
        tombstones = self.tombstones
        for key, raft_index, location in zip(keys, indexes, locations, strict=True):
            newest = sequence.get(key)
            if newest is not None and newest > raft_index:
                continue
            sequence[key] = raft_index
            if location is None:
                index_locations.pop(key, None)
                tombstones[key] = (raft_index, segment_id)
            else:
                index_locations[key] = location
                if newest is not None:
                    tombstones.pop(key, None)
        if indexes:
            self._loaded_index_max = max(self._loaded_index_max, max(indexes))

    def _load_newer(self, segment_id, keys, indexes, locations, sequence) -> None:
        """Every entry is newer than all loaded before (or no segment overlaps another): later entries win,
        and with only puts the merge runs at C speed."""
        if indexes:
            self._loaded_index_max = max(self._loaded_index_max, max(indexes))
        if sequence is not None:
            sequence.update(zip(keys, indexes, strict=True))
        if None not in locations:
            self.locations.update(zip(keys, locations, strict=True))
            if self.tombstones:
                for key in self.tombstones.keys() & set(keys):
                    del self.tombstones[key]
            return
        index_locations, tombstones = self.locations, self.tombstones
        for key, raft_index, location in zip(keys, indexes, locations, strict=True):
            if location is None:
                index_locations.pop(key, None)
                tombstones[key] = (raft_index, segment_id)
            else:
                index_locations[key] = location
                tombstones.pop(key, None)

    def finish_load(self) -> None:
        """Build the sorted keys once every segment is loaded. Live bytes are counted when first needed."""
        self.keys = SortedList(self.locations)
        self._live_bytes = None

    def _count_live_bytes(self) -> collections.Counter[int]:
        live = collections.defaultdict(int)
        mask, overhead = _length_mask, record_overhead_bytes
        for key, location in self.locations.items():  # location_bytes() inlined: 1M calls cost 0.2 s
            live[location >> 52] += len(key) + (location & mask) + overhead
        for key, (_, segment_id) in self.tombstones.items():
            live[segment_id] += tombstone_bytes(key)
        return collections.Counter(live)


def list_children(sorted_keys, prefix: str) -> list[str]:
    """Vault's physical LIST over a sorted container with `irange`: the immediate children of `prefix`,
    in key order; a folder appears once, ending in '/'."""
    children = []
    start = prefix
    while True:
        folder = None
        for key in sorted_keys.irange(minimum=start):
            if not key.startswith(prefix):
                return children
            rest = key[len(prefix) :]
            slash = rest.find("/")
            if slash < 0:
                children.append(rest)
                continue
            folder = rest[: slash + 1]
            children.append(folder)
            break
        if folder is None:
            return children
        # '0' is the character after '/': skip every key inside this folder
        start = prefix + folder[:-1] + "0"
