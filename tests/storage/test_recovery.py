"""Open on damaged files: a torn tail is cut off, anything else is refused with the file and offset named.

On the real file system: truncate the newest segment at every byte offset of its last two records; flip
bits in sealed segments (with and without hints), mid-file in the newest segment, in a hint, in CURRENT
and in a stored value; open the same dir twice, in one process and from another.
"""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from storage import CorruptionError, LogStore, StoreLocked
from storage.record import read_frame

ROOT = pathlib.Path(__file__).resolve().parents[2]


def generation(directory) -> pathlib.Path:
    (current,) = [path for path in pathlib.Path(directory).iterdir() if path.name.startswith("gen-")]
    return current


def segments(directory) -> list[pathlib.Path]:
    return sorted(generation(directory).glob("*.seg"))


def record_offsets(path: pathlib.Path) -> list[int]:
    data = path.read_bytes()
    offsets, offset = [], 0
    while offset < len(data):
        offsets.append(offset)
        offset = read_frame(data, offset)[2]
    return offsets + [len(data)]


def build(directory, batches: int, segment_bytes_max: int = 1 << 20, hints: bool = False) -> dict:
    expected = {}
    with LogStore.open(str(directory), background=False, segment_bytes_max=segment_bytes_max) as store:
        for index in range(1, batches + 1):
            key, value = f"k/{index % 7}", bytes([index]) * (20 + index)
            store.apply(index, [("put", key, value)])
            expected[key] = value
        if hints:
            store.maintain()
    return expected


def state(store) -> dict:
    return {f"k/{name}": store.get(f"k/{name}") for name in store.list("k/")}


def test_a_torn_tail_at_every_offset_opens_with_the_complete_prefix(tmp_path):
    source = tmp_path / "source"
    build(source, 10)
    newest = segments(source)[-1]
    offsets = record_offsets(newest)
    second_last, last, end = offsets[-3], offsets[-2], offsets[-1]
    for cut in range(second_last, end):
        trial = tmp_path / f"cut{cut}"
        shutil.copytree(source, trial)
        os.truncate(segments(trial)[-1], cut)
        with LogStore.open(str(trial), background=False) as store:
            whole_records = 8 if cut < last else 9  # record 9 starts at second_last, record 10 at last
            assert store.applied_index == whole_records, cut
            assert os.path.getsize(segments(trial)[-2]) in (second_last, last), cut
            store.apply(store.applied_index + 1, [("put", "k/after", b"v")])
            assert store.get("k/after") == b"v"
        shutil.rmtree(trial)


def test_a_zero_filled_tail_reads_as_the_end(tmp_path):
    expected = build(tmp_path / "s", 5)
    with open(segments(tmp_path / "s")[-1], "ab") as file:
        file.write(bytes(4096))
    with LogStore.open(str(tmp_path / "s"), background=False) as store:
        assert store.applied_index == 5
        assert state(store) == expected


@pytest.mark.parametrize("hints", [False, True])
def test_a_bit_flip_in_a_sealed_segment_refuses_to_open_naming_file_and_offset(tmp_path, hints):
    build(tmp_path / "s", 60, segment_bytes_max=1024, hints=hints)
    sealed = segments(tmp_path / "s")[0]
    offsets = record_offsets(sealed)
    target = offsets[2] + 12
    data = bytearray(sealed.read_bytes())
    data[target] ^= 0x10
    sealed.write_bytes(bytes(data))
    with pytest.raises(CorruptionError) as error:
        LogStore.open(str(tmp_path / "s"), background=False)
    assert error.value.path == str(sealed)
    assert error.value.offset == offsets[2]
    assert sealed.name in str(error.value) and f"offset {offsets[2]}" in str(error.value)


def test_mid_file_corruption_in_the_newest_segment_is_not_a_torn_tail(tmp_path):
    build(tmp_path / "s", 10)
    newest = segments(tmp_path / "s")[-1]
    offsets = record_offsets(newest)
    data = bytearray(newest.read_bytes())
    data[offsets[3] + 4] ^= 0xFF  # the length field of a record with whole records after it
    newest.write_bytes(bytes(data))
    with pytest.raises(CorruptionError, match="a valid record follows"):
        LogStore.open(str(tmp_path / "s"), background=False)
    size = newest.stat().st_size
    assert size == len(data), "refusing to open must not truncate"
    with LogStore.open(str(tmp_path / "s"), background=False, repair=True) as store:
        assert store.applied_index == 2


def test_a_damaged_hint_falls_back_to_a_scan_with_the_same_index(tmp_path):
    expected = build(tmp_path / "s", 60, segment_bytes_max=1024, hints=True)
    hint_files = sorted(generation(tmp_path / "s").glob("*.hint"))
    assert hint_files
    for hint in hint_files:
        data = bytearray(hint.read_bytes())
        data[len(data) // 2] ^= 0x01
        hint.write_bytes(bytes(data))
    with LogStore.open(str(tmp_path / "s"), background=False) as store:
        assert state(store) == expected
        assert store.applied_index == 60


def test_hints_and_scans_load_the_same_index(tmp_path):
    expected = build(tmp_path / "s", 80, segment_bytes_max=1024, hints=True)
    with LogStore.open(str(tmp_path / "s"), background=False) as store:
        with_hints = (state(store), dict(store._index.locations), store.applied_index)
    for hint in generation(tmp_path / "s").glob("*.hint"):
        hint.unlink()
    with LogStore.open(str(tmp_path / "s"), background=False) as store:
        assert (state(store), dict(store._index.locations), store.applied_index) == with_hints
    assert with_hints[0] == expected


def test_a_damaged_current_refuses_to_open(tmp_path):
    build(tmp_path / "s", 3)
    current = tmp_path / "s" / "CURRENT"
    current.write_bytes(current.read_bytes().replace(b"gen-0000000001", b"gen-0000000002"))
    with pytest.raises(CorruptionError, match="CURRENT"):
        LogStore.open(str(tmp_path / "s"), background=False)


def test_a_flipped_stored_value_raises_instead_of_returning_wrong_bytes(tmp_path):
    build(tmp_path / "s", 3)
    with LogStore.open(str(tmp_path / "s"), background=False) as store:
        newest = segments(tmp_path / "s")[-2]
        data = bytearray(newest.read_bytes())
        value_at = data.rfind(bytes([3]) * 23)
        data[value_at] ^= 0x01
        newest.write_bytes(bytes(data))
        with pytest.raises(CorruptionError, match="fails its checksum"):
            store.get("k/3")


def test_a_second_handle_in_the_same_process_is_refused(tmp_path):
    with LogStore.open(str(tmp_path / "s"), background=False) as store:
        store.apply(1, [("put", "k", b"v")])
        with pytest.raises(StoreLocked):
            LogStore.open(str(tmp_path / "s"), background=False)
        assert store.get("k") == b"v"


def test_a_second_process_is_refused(tmp_path):
    with LogStore.open(str(tmp_path / "s"), background=False):
        probe = (
            "import sys; from storage import LogStore, StoreLocked\n"
            "try:\n    LogStore.open(sys.argv[1])\nexcept StoreLocked as error:\n    print('locked:', error)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", probe, str(tmp_path / "s")], cwd=ROOT, capture_output=True, text=True,
            timeout=60,
        )
    assert result.stdout.startswith("locked:"), result.stderr
