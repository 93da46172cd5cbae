"""Runs the scenario files in tests/storage/testdata against a real LogStore in a temporary dir.

Commands (paths in outputs read `<data>` for the temporary dir):
    open [segment_bytes_max=N] [repair]    applied index and key count, or the error
    apply INDEX [put KEY=VALUE | delete KEY]...
    get KEY / list [PREFIX] / dump          values, children, every key=value
    close / maintain / compact [active]
    files                                   the current generation's files and sizes
    records FILE                            each record's offset, type and payload length
    truncate FILE N                         cut N bytes off the end of FILE (a segment or hint name)
    flip FILE OFFSET                        flip the lowest bit of the byte at OFFSET
"""

import pathlib
import shlex

import pytest

from storage import LogStore, StorageError
from storage.record import RecordType, read_frame

from .. import datadriven

testdata = pathlib.Path(__file__).parent / "testdata"


class Scenario:
    def __init__(self, directory: pathlib.Path):
        self.directory = directory
        self.store: LogStore | None = None

    def handle(self, command: str) -> str:
        name, *arguments = shlex.split(command)
        try:
            return getattr(self, "do_" + name.replace("-", "_"))(*arguments)
        except (StorageError, OSError) as error:
            return f"error: {type(error).__name__}: {error}".replace(str(self.directory), "<data>")

    def generation(self) -> pathlib.Path:
        (current,) = [path for path in self.directory.iterdir() if path.name.startswith("gen-")]
        return current

    def do_open(self, *options: str) -> str:
        sizes = dict(option.split("=") for option in options if "=" in option)
        self.store = LogStore.open(
            str(self.directory), background=False, repair="repair" in options,
            segment_bytes_max=int(sizes.get("segment_bytes_max", 1 << 20)),
        )
        return f"applied_index={self.store.applied_index} keys={len(self.store)}"

    def do_apply(self, index: str, *words: str) -> str:
        ops, position = [], 0
        while position < len(words):
            if words[position] == "put":
                key, _, value = words[position + 1].partition("=")
                ops.append(("put", key, value.encode()))
            else:
                ops.append(("delete", words[position + 1], None))
            position += 2
        self.store.apply(int(index), ops)
        return "ok"

    def do_get(self, key: str) -> str:
        value = self.store.get(key)
        return "<none>" if value is None else value.decode()

    def do_list(self, prefix: str = "") -> str:
        return " ".join(self.store.list(prefix))

    def do_dump(self) -> str:
        lines, folders = [], [""]
        while folders:
            folder = folders.pop()
            for child in self.store.list(folder):
                if child.endswith("/"):
                    folders.append(folder + child)
                else:
                    lines.append(f"{folder}{child}={self.store.get(folder + child).decode()}")
        return "\n".join(sorted(lines))

    def do_close(self) -> str:
        self.store.close()
        return "ok"

    def do_maintain(self) -> str:
        self.store.maintain()
        return "ok"

    def do_compact(self, *options: str) -> str:
        self.store.compact(include_active="active" in options)
        return "ok"

    def do_files(self) -> str:
        return "\n".join(f"{path.name} {path.stat().st_size}" for path in sorted(self.generation().iterdir()))

    def do_records(self, name: str) -> str:
        data = (self.generation() / name).read_bytes()
        lines, offset = [], 0
        while offset < len(data):
            record_type, start, end = read_frame(data, offset)
            lines.append(f"{offset} {RecordType(record_type).name} {end - start}")
            offset = end
        return "\n".join(lines)

    def do_truncate(self, name: str, cut: str) -> str:
        path = self.generation() / name
        path.write_bytes(path.read_bytes()[: -int(cut)])
        return "ok"

    def do_flip(self, name: str, offset: str) -> str:
        path = self.generation() / name
        data = bytearray(path.read_bytes())
        data[int(offset)] ^= 0x01
        path.write_bytes(bytes(data))
        return "ok"


@pytest.mark.parametrize("path", sorted(testdata.glob("*.txt")), ids=lambda path: path.name)
def test_scenario(path, tmp_path):
    scenario = Scenario(tmp_path / "store")
    try:
        datadriven.run(path, scenario.handle)
    finally:
        if scenario.store is not None:
            scenario.store.close()
