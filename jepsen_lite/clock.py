"""Wall-clock bumps of one node with libfaketime, when the library is installed (`apt-get install faketime`).

Each node starts with LD_PRELOAD of libfaketime and its own FAKETIME_TIMESTAMP_FILE (`<run>/clock/<id>.rc`,
re-read on every call with FAKETIME_NO_CACHE=1), initially "+0". A bump writes "+30" or "-30" there; the reset
writes "+0" back. DONT_FAKE_MONOTONIC=1 keeps the monotonic clock true: libfaketime otherwise replaces it too
(jepsen.md §4, Clock skew), and raft's timers run on it. The harness itself never preloads the library: its
history timestamps come from its own monotonic clock.

Without the library the clock nemesis is skipped, and the run records that it was ("skipped": why), rather than
pretending to have bumped anything. The same holds for a library that breaks the node: Debian's libfaketime 0.9.10
with DONT_FAKE_MONOTONIC=1 makes every `time.sleep` of Python 3.11 fail with EINVAL (its clock_nanosleep wrapper
turns a TIMER_ABSTIME monotonic deadline into a negative one), and pysyncobj's tick thread sleeps, so a preloaded
node stalls within seconds. `probe` runs a sleep and a bump in a child Python under the very environment a node
gets, and the nemesis is used only when both behave.
"""

import glob
import os
import pathlib
import subprocess
import sys
import tempfile

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


probe_timeout_seconds = 20.0
_probe_script = """
import pathlib, sys, time
rc = pathlib.Path(sys.argv[1])
wall, monotonic = time.time(), time.monotonic()
time.sleep(0.01)
rc.write_text("+30\\n")
shifted = time.time() - wall - (time.monotonic() - monotonic)
time.sleep(0.01)
assert 25 < shifted < 35, f"a +30 s bump moved the wall clock by {shifted:.1f} s"
assert time.monotonic() - monotonic < 5, "the bump moved the monotonic clock too"
"""


def probe(library: str) -> str | None:
    """None when a node's Python can sleep, and bump its wall clock alone, under `library`; else why not."""
    with tempfile.TemporaryDirectory(prefix="jepsen-lite-clock-") as scratch:
        rc = pathlib.Path(scratch) / "probe.rc"
        rc.write_text("+0\n")
        environment = {**os.environ, **_preload(library, rc)}
        try:
            done = subprocess.run([sys.executable, "-c", _probe_script, str(rc)], env=environment,
                                  capture_output=True, text=True, timeout=probe_timeout_seconds)
        except subprocess.TimeoutExpired:
            return f"{library} hangs a Python child (probe over {probe_timeout_seconds:g} s)"
    if done.returncode == 0:
        return None
    last = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return f"{library} breaks a node's Python (time.sleep or the bump failed: {last})"


def _preload(library: str, rc: pathlib.Path) -> dict[str, str]:
    return {"LD_PRELOAD": library, "FAKETIME_TIMESTAMP_FILE": str(rc), "FAKETIME_NO_CACHE": "1",
            "DONT_FAKE_MONOTONIC": "1"}


class Clock:
    """Per-node wall-clock offsets. `available` is False, and `skipped` says why, without libfaketime."""

    def __init__(self, run_dir: pathlib.Path, library: str | None = None):
        self.directory = pathlib.Path(run_dir) / "clock"
        found = library if library is not None else find_library()
        self.skipped = probe(found) if found else "libfaketime not found (apt-get install faketime)"
        self.library = None if self.skipped else found

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
        return _preload(self.library, rc)

    def bump(self, node_id: str, seconds: int) -> None:
        assert self.available, "bump without libfaketime"
        self._rc(node_id).write_text(f"{seconds:+d}\n")

    def reset(self, node_id: str) -> None:
        if self.available:
            self._rc(node_id).write_text("+0\n")

    def _rc(self, node_id: str) -> pathlib.Path:
        return self.directory / f"{node_id}.rc"
