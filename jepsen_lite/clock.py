"""Wall-clock bumps of one node with libfaketime, when the library is installed (`apt-get install faketime`).

Each node starts with LD_PRELOAD of libfaketime and its own FAKETIME_TIMESTAMP_FILE (`<run>/clock/<id>.rc`,
re-read on every call with FAKETIME_NO_CACHE=1), initially "+0". A bump writes "+30" or "-30" there; the reset
writes "+0" back. DONT_FAKE_MONOTONIC=1 keeps the monotonic clock true: libfaketime otherwise replaces it too
(jepsen.md §4, Clock skew), and raft's timers run on it. The harness itself never preloads the library: its
history timestamps come from its own monotonic clock.

Without the library the clock nemesis is skipped, and the run records that it was ("skipped": why), rather than
pretending to have bumped anything.
"""

import glob
import pathlib

library_patterns = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/*/faketime/libfaketimeMT.so.1",
    "/usr/lib/faketime/libfaketimeMT.so.1",
    "/usr/local/lib/faketime/libfaketimeMT.so.1",
)
bump_seconds = 30


def find_library() -> str | None:
    for pattern in library_patterns:
        for path in sorted(glob.glob(pattern)):
            if pathlib.Path(path).is_file():
                return path
    return None


class Clock:
    """Per-node wall-clock offsets. `available` is False, and `skipped` says why, without libfaketime."""

    def __init__(self, run_dir: pathlib.Path, library: str | None = None):
        self.library = library if library is not None else find_library()
        self.directory = pathlib.Path(run_dir) / "clock"
        self.skipped = None if self.library else "libfaketime not found (apt-get install faketime)"

    @property
    def available(self) -> bool:
        return self.library is not None

    def node_environment(self, node_id: str) -> dict[str, str]:
        """The variables that put `node_id` under libfaketime (none without the library)."""
        if not self.available:
            return {}
        self.directory.mkdir(parents=True, exist_ok=True)
        rc = self._rc(node_id)
        if not rc.exists():
            rc.write_text("+0\n")
        return {"LD_PRELOAD": self.library, "FAKETIME_TIMESTAMP_FILE": str(rc), "FAKETIME_NO_CACHE": "1",
                "DONT_FAKE_MONOTONIC": "1"}

    def bump(self, node_id: str, seconds: int) -> None:
        assert self.available, "bump without libfaketime"
        self._rc(node_id).write_text(f"{seconds:+d}\n")

    def reset(self, node_id: str) -> None:
        if self.available:
            self._rc(node_id).write_text("+0\n")

    def _rc(self, node_id: str) -> pathlib.Path:
        return self.directory / f"{node_id}.rc"
