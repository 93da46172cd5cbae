"""DurableJournal and RaftMeta: round trips, pysyncobj's MemoryJournal as an oracle, power loss, torn tails."""

import errno
import os
import random

import pytest
from pysyncobj.journal import MemoryJournal

from raft.journal import ENTRY_COMMAND_BYTES_MAX, DurableJournal, JournalCorrupt, JournalFailed, RaftMeta
from storage.record import frame_header_bytes
from tests.storage.simulated_disk import SimulatedCrash, SimulatedDisk

PATH = "/d/journal"


def fresh_disk() -> SimulatedDisk:
    disk = SimulatedDisk()
    disk.mkdir("/d")
    disk.fsync_dir("/")
    return disk


def entry(i: int, term: int = 1, size: int | None = None) -> tuple[bytes, int, int]:
    return (bytes([i % 256]) * (i % 7 if size is None else size), i, term)


def file_path(tmp_path) -> str:
    return str(tmp_path / "journal")


def written(tmp_path, entries, flush_each=True) -> tuple[str, list[int]]:
    """A journal file on disk with `entries`; returns its path and the file size after each entry."""
    path = file_path(tmp_path)
    journal = DurableJournal(path)
    sizes = [os.path.getsize(path)]
    for item in entries:
        journal.add(*item)
        if flush_each:
            journal.flush()
            sizes.append(os.path.getsize(path))
    journal.close()
    return path, sizes


# --- round trips -----------------------------------------------------------------------------------------


def test_entries_term_and_vote_round_trip_on_real_files(tmp_path):
    path = file_path(tmp_path)
    journal = DurableJournal(path)
    assert (len(journal), journal.getCurrentTerm(), journal.getVotedForNodeId()) == (0, 0, None)
    entries = [entry(1, size=0), entry(2, 3, size=1000), (bytearray(b"x\x00y"), 3, 3)]
    for item in entries:
        journal.add(*item)
    journal.setCurrentTerm(3, "10.0.0.1:4321")
    journal.flush()
    journal._destroy()
    reopened = DurableJournal(path)
    assert list(reopened[:]) == [(bytes(c), i, t) for c, i, t in entries]
    assert reopened[-1] == (b"x\x00y", 3, 3) and isinstance(reopened[0][0], bytes)
    assert (reopened.getCurrentTerm(), reopened.getVotedForNodeId()) == (3, "10.0.0.1:4321")
    assert reopened.getRaftCommitIndex() == 1
    reopened.close()


def test_flush_is_one_write_and_one_fsync_and_nothing_when_idle():
    disk = fresh_disk()
    journal = DurableJournal(PATH, disk)
    before = (disk.mutations, disk.sync_calls)
    journal.flush()
    assert (disk.mutations, disk.sync_calls) == before
    for i in range(1, 11):
        journal.add(*entry(i))
    assert (disk.mutations, disk.sync_calls) == before, "add only buffers"
    assert (journal.durable_count, journal.pending_count) == (0, 10)
    journal.flush()
    assert (disk.mutations - before[0], disk.sync_calls - before[1]) == (2, 1)
    assert (journal.durable_count, journal.pending_count) == (10, 0)


def test_dropping_only_buffered_entries_costs_no_io():
    disk = fresh_disk()
    journal = DurableJournal(PATH, disk)
    journal.add(*entry(1))
    journal.flush()
    journal.add(*entry(2))
    journal.add(*entry(3))
    before = disk.mutations
    journal.deleteEntriesFrom(2)
    assert disk.mutations == before and journal[:] == [entry(1), entry(2)]
    journal.deleteEntriesFrom(1)
    assert disk.mutations == before and journal[:] == [entry(1)]


def test_term_and_vote_are_written_only_on_change():
    disk = fresh_disk()
    meta = RaftMeta(PATH + ".meta", disk)
    meta.set(2, "a")
    before = disk.sync_calls
    meta.set(2, "a")
    assert disk.sync_calls == before
    meta.set(2, None)
    assert disk.sync_calls == before + 2  # file and directory
    assert (RaftMeta(PATH + ".meta", disk).term, RaftMeta(PATH + ".meta", disk).voted_for) == (2, None)


def test_bad_arguments_are_refused_and_change_nothing():
    disk = fresh_disk()
    journal = DurableJournal(PATH, disk)
    with pytest.raises(ValueError, match="over"):
        journal.add(b"\0" * (ENTRY_COMMAND_BYTES_MAX + 1), 1, 1)
    with pytest.raises(TypeError):
        journal.add("text", 1, 1)
    with pytest.raises(ValueError):
        journal.add(b"", -1, 1)
    with pytest.raises(ValueError):
        journal.setCurrentTerm(-1, None)
    with pytest.raises(TypeError):
        journal.setCurrentTerm(1, 7)
    assert (len(journal), journal.pending_count, journal.getCurrentTerm()) == (0, 0, 0)


def test_largest_command_round_trips(tmp_path):
    path, _ = written(tmp_path, [(b"\xab" * ENTRY_COMMAND_BYTES_MAX, 1, 1)])
    journal = DurableJournal(path)
    assert journal[0][0] == b"\xab" * ENTRY_COMMAND_BYTES_MAX
    journal.close()


# --- pysyncobj's MemoryJournal as the oracle -------------------------------------------------------------


def random_operations(journal, oracle, rng: random.Random, steps: int, reopen) -> DurableJournal:
    next_index = 1
    for _ in range(steps):
        choice = rng.random()
        size = len(oracle)
        if choice < 0.45:
            item = (rng.randbytes(rng.randint(0, 40)), next_index, rng.randint(0, 5))
            next_index += 1
            journal.add(*item)
            oracle.add(*item)
        elif choice < 0.6:
            journal.flush()
        elif choice < 0.7:
            at = rng.randint(-size - 2, size + 2)
            journal.deleteEntriesFrom(at)
            oracle.deleteEntriesFrom(at)
        elif choice < 0.8:
            at = rng.randint(-size - 2, size + 2)
            journal.deleteEntriesTo(at)
            oracle.deleteEntriesTo(at)
        elif choice < 0.82:
            journal.clear()
            oracle.clear()
        elif choice < 0.9:
            term, vote = rng.randint(0, 9), rng.choice([None, "a:1", "b:2"])
            journal.setCurrentTerm(term, vote)
            oracle.setCurrentTerm(term, vote)
        else:
            journal = reopen(journal)
        assert len(journal) == len(oracle)
        assert journal[:] == oracle[:]
        if len(oracle):
            position = rng.randint(-len(oracle), len(oracle) - 1)
            assert journal[position] == oracle[position]
            low, high = sorted(rng.randint(-len(oracle), len(oracle)) for _ in range(2))
            assert journal[low:high] == oracle[low:high]
        assert journal.getCurrentTerm() == oracle.getCurrentTerm()
        assert journal.getVotedForNodeId() == oracle.getVotedForNodeId()
    return journal


@pytest.mark.parametrize("seed", range(8))
def test_behaves_like_pysyncobj_memory_journal_across_flushes_and_reopens(seed):
    disk = fresh_disk()

    def reopen(journal):
        journal.close()
        return DurableJournal(PATH, disk)

    journal = random_operations(DurableJournal(PATH, disk), MemoryJournal(), random.Random(seed), 300, reopen)
    journal.close()


def test_behaves_like_pysyncobj_memory_journal_on_real_files(tmp_path):
    path = file_path(tmp_path)

    def reopen(journal):
        journal.close()
        return DurableJournal(path)

    journal = random_operations(DurableJournal(path), MemoryJournal(), random.Random(99), 200, reopen)
    journal.close()


# --- power loss ------------------------------------------------------------------------------------------


def is_prefix(short, long) -> bool:
    return list(long[: len(short)]) == list(short)


@pytest.mark.parametrize("seed", range(10))
def test_power_loss_keeps_everything_flushed_and_nothing_unasked_for(seed):
    """After power loss: `must` (flushed, minus later deletions) ⊑ reopened log ⊑ the log in memory."""
    rng = random.Random(seed)
    disk = fresh_disk()
    journal = DurableJournal(PATH, disk)
    must: list = []
    next_index = 1
    for _ in range(rng.randint(1, 120)):
        choice = rng.random()
        if choice < 0.6:
            journal.add(rng.randbytes(rng.randint(0, 30)), next_index, 1)
            next_index += 1
        elif choice < 0.8:
            journal.flush()
            must = journal[:]
        elif choice < 0.9:
            at = rng.randint(0, len(journal))
            journal.deleteEntriesFrom(at)
            must = must[:at]
        else:
            at = rng.randint(0, len(journal))
            journal.deleteEntriesTo(at)
            must = must[at:]
    state = journal[:]
    disk.power_loss(rng)
    reopened = DurableJournal(PATH, disk)
    assert is_prefix(must, reopened[:]) and is_prefix(reopened[:], state)


def crash_everywhere(setup, scenario, check, seeds=3):
    """Run `scenario` after `setup`, crashing at each of its mutating steps (and not at all), then power loss."""
    disk = fresh_disk()
    journal = setup(disk)
    start = disk.mutations
    scenario(journal)
    steps = disk.mutations - start
    assert steps > 0
    for crash_at in range(steps + 1):
        for seed in range(seeds):
            disk = fresh_disk()
            journal = setup(disk)
            disk.crash_after(crash_at)
            try:
                scenario(journal)
                completed = True
            except SimulatedCrash:
                completed = False
            disk.power_loss(random.Random(seed))
            reopened = DurableJournal(PATH, disk)
            check(reopened, completed)
            # The recovered journal is usable: append, flush, reopen.
            tail = (b"after", (reopened[-1][1] + 1) if len(reopened) else 1, 9)
            reopened.add(*tail)
            reopened.flush()
            assert DurableJournal(PATH, disk)[:] == reopened[:]


BASE = [entry(i) for i in range(1, 6)]


def base_journal(disk, pending=()) -> DurableJournal:
    journal = DurableJournal(PATH, disk)
    for item in BASE:
        journal.add(*item)
    journal.flush()
    journal.setCurrentTerm(5, "a")
    for item in pending:
        journal.add(*item)
    return journal


def test_crash_anywhere_in_append_and_flush_leaves_a_prefix():
    new = [entry(6, 2, size=300), entry(7, 2, size=5), entry(8, 2, size=0)]

    def scenario(journal):
        for item in new:
            journal.add(*item)
        journal.flush()

    def check(reopened, completed):
        assert is_prefix(reopened[:], BASE + new) and len(reopened) >= len(BASE)
        if completed:
            assert reopened[:] == BASE + new
        assert (reopened.getCurrentTerm(), reopened.getVotedForNodeId()) == (5, "a")

    crash_everywhere(base_journal, scenario, check)


def test_crash_anywhere_in_truncate_then_append_is_old_or_new_never_a_mix():
    replacement = entry(3, 2, size=50)

    def scenario(journal):
        journal.deleteEntriesFrom(2)
        journal.add(*replacement)
        journal.flush()

    def check(reopened, completed):
        allowed = [BASE, BASE[:2], BASE[:2] + [replacement]]
        assert reopened[:] in allowed
        if completed:
            assert reopened[:] == BASE[:2] + [replacement]

    crash_everywhere(lambda disk: base_journal(disk, pending=[entry(6)]), scenario, check)


def test_crash_anywhere_in_compaction_is_old_or_new():
    def scenario(journal):
        journal.deleteEntriesTo(3)

    def check(reopened, completed):
        assert reopened[:] in [BASE, BASE + [entry(6)], BASE[3:] + [entry(6)]]
        if completed:
            assert reopened[:] == BASE[3:] + [entry(6)]

    crash_everywhere(lambda disk: base_journal(disk, pending=[entry(6)]), scenario, check)


def test_crash_anywhere_in_term_and_vote_update_is_old_or_new():
    def scenario(journal):
        journal.setCurrentTerm(6, "b")
        journal.setCurrentTerm(6, None)

    def check(reopened, completed):
        assert reopened[:] == BASE
        assert (reopened.getCurrentTerm(), reopened.getVotedForNodeId()) in [(5, "a"), (6, "b"), (6, None)]
        if completed:
            assert (reopened.getCurrentTerm(), reopened.getVotedForNodeId()) == (6, None)

    crash_everywhere(base_journal, scenario, check)


def test_crash_anywhere_while_recovering_a_torn_tail():
    def setup(disk):
        journal = base_journal(disk)
        journal.add(*entry(6, size=200))
        journal.flush()
        node = disk._lookup(PATH)
        node.data = node.data[:-50]  # a torn last record, as power loss leaves it
        node.durable = bytes(node.data)
        return disk

    def scenario(disk):
        DurableJournal(PATH, disk)

    def check(reopened, completed):
        assert reopened[:] == BASE

    crash_everywhere(setup, scenario, check)


def test_failed_fsync_poisons_the_journal_and_reopen_recovers():
    disk = fresh_disk()
    journal = base_journal(disk)
    journal.add(*entry(6))
    disk.inject("fsync", errno.EIO)
    with pytest.raises(OSError):
        journal.flush()
    with pytest.raises(JournalFailed):
        journal.add(*entry(7))
    with pytest.raises(JournalFailed):
        journal.flush()
    disk.power_loss(random.Random(0))
    assert DurableJournal(PATH, disk)[:] in [BASE, BASE + [entry(6)]]


def test_failed_short_write_poisons_the_journal_and_reopen_drops_the_partial_record():
    disk = fresh_disk()
    journal = base_journal(disk)
    journal.add(*entry(6, size=100))
    disk.inject("write", errno.ENOSPC)
    with pytest.raises(OSError):
        journal.flush()
    with pytest.raises(JournalFailed):
        journal.deleteEntriesFrom(0)
    assert DurableJournal(PATH, disk)[:] == BASE


def test_stale_temporary_files_are_removed_on_open():
    disk = fresh_disk()
    base_journal(disk).close()
    for name in (PATH + ".tmp", PATH + ".meta.tmp"):
        disk.close(disk.open_new(name))
    reopened = DurableJournal(PATH, disk)
    assert reopened[:] == BASE and disk.listdir("/d") == ["journal", "journal.meta"]


# --- torn tails and corruption on real files -------------------------------------------------------------


def read_bytes(path) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def reopen_bytes(path: str, data: bytes) -> list:
    """The entries of a journal file holding `data`, after recovery."""
    with open(path, "wb") as file:
        file.write(data)
    journal = DurableJournal(path)
    try:
        return journal[:]
    finally:
        journal.close()


def test_torn_tail_at_every_byte_of_the_last_record_reopens_to_the_prefix(tmp_path):
    entries = [entry(i, size=20) for i in range(1, 4)]
    path, sizes = written(tmp_path, entries)
    data = read_bytes(path)
    for cut in range(sizes[-2], sizes[-1]):
        assert reopen_bytes(path, data[:cut]) == entries[:2], cut
        assert os.path.getsize(path) < cut or cut == sizes[-2], "the torn tail is gone from the file"


def test_torn_tail_across_a_multi_record_flush_reopens_to_a_prefix(tmp_path):
    entries = [entry(i, size=i * 3) for i in range(1, 9)]
    path = file_path(tmp_path)
    journal = DurableJournal(path)
    for item in entries[:2]:
        journal.add(*item)
    journal.flush()
    flushed = os.path.getsize(path)
    for item in entries[2:]:
        journal.add(*item)
    journal.close()
    data = read_bytes(path)
    for cut in range(flushed, len(data) + 1):
        recovered = reopen_bytes(path, data[:cut])
        assert is_prefix(recovered, entries) and len(recovered) >= 2, cut
    assert recovered == entries


def test_a_zero_filled_tail_is_a_torn_tail(tmp_path):
    entries = [entry(i, size=20) for i in range(1, 4)]
    path, sizes = written(tmp_path, entries)
    data = read_bytes(path)
    assert reopen_bytes(path, data + b"\0" * 4096) == entries
    assert reopen_bytes(path, data[: sizes[-2]] + b"\0" * 30) == entries[:2]


def test_commands_that_embed_records_of_another_journal_do_not_look_like_corruption(tmp_path):
    """Client data can hold well-formed records; without this file's nonce they never count as entries."""
    (tmp_path / "inner").mkdir()
    inner, _ = written(tmp_path / "inner", [entry(i) for i in range(9)])
    payload = read_bytes(inner)
    entries = [entry(1), (payload, 2, 1), (payload * 2, 3, 1)]
    path, sizes = written(tmp_path, entries)
    data = read_bytes(path)
    for cut in range(sizes[-3], sizes[-1], 3):
        recovered = reopen_bytes(path, data[:cut])
        assert is_prefix(recovered, entries) and len(recovered) >= 1, cut


def test_corruption_before_the_last_record_is_an_error_not_a_silent_truncation(tmp_path):
    entries = [entry(i, size=20) for i in range(1, 5)]
    path, sizes = written(tmp_path, entries)
    data = read_bytes(path)
    for position in range(sizes[0], sizes[-2]):  # every byte of every record but the last
        damaged = bytearray(data)
        damaged[position] ^= 0x41
        with pytest.raises(JournalCorrupt, match="mid-file corruption"):
            reopen_bytes(path, bytes(damaged))


def test_damaged_last_record_is_treated_as_a_torn_tail(tmp_path):
    entries = [entry(i, size=20) for i in range(1, 5)]
    path, sizes = written(tmp_path, entries)
    data = read_bytes(path)
    damaged = bytearray(data)
    damaged[sizes[-2] + frame_header_bytes + 3] ^= 0xFF
    assert reopen_bytes(path, bytes(damaged)) == entries[:3]


def test_damaged_header_or_meta_is_an_error(tmp_path):
    path, sizes = written(tmp_path, [entry(1)])
    data = read_bytes(path)
    with pytest.raises(JournalCorrupt, match="header"):
        reopen_bytes(path, b"\x01" + data[1:])
    with open(path, "wb") as file:
        file.write(data)
    journal = DurableJournal(path)
    journal.setCurrentTerm(4, "n1")
    journal.close()
    meta = read_bytes(path + ".meta")
    with open(path + ".meta", "wb") as file:
        file.write(meta[:-1])
    with pytest.raises(JournalCorrupt, match="meta"):
        DurableJournal(path)
