"""The clock nemesis is offered only when libfaketime really bumps a node's wall clock and leaves it working.

Debian's libfaketime 0.9.10 with DONT_FAKE_MONOTONIC=1 makes Python's time.sleep raise EINVAL, which stalls
pysyncobj's tick thread: a run that preloaded it would measure a broken harness, not the server. The probe runs
a child Python under the node's exact environment; these tests check that it refuses what does not work.
"""

import subprocess
import sys

from jepsen_lite import clock


def test_a_library_that_does_not_bump_the_clock_is_refused(tmp_path):
    reason = clock.probe(str(tmp_path / "libmissing.so"))  # the loader ignores it: the wall clock never moves
    assert reason is not None and "bump" in reason


def test_a_refused_library_makes_the_clock_unavailable_and_says_why(tmp_path):
    node_clock = clock.Clock(tmp_path, library=str(tmp_path / "libmissing.so"))
    assert not node_clock.available and node_clock.skipped
    assert node_clock.node_environment("n1") == {}  # nothing preloaded into a node


def test_the_installed_library_is_offered_exactly_when_a_node_can_sleep_under_it(tmp_path):
    library = clock.find_library()
    if library is None:
        assert clock.Clock(tmp_path).skipped == "libfaketime not found (apt-get install faketime)"
        return
    environment = {"LD_PRELOAD": library, "FAKETIME": "+0", "DONT_FAKE_MONOTONIC": "1"}
    sleeps = subprocess.run([sys.executable, "-c", "import time; time.sleep(0.01)"], env=environment,
                            capture_output=True, timeout=20).returncode == 0
    reason = clock.probe(library)
    if not sleeps:  # Debian 0.9.10 here: the defect is found and named
        assert reason is not None and "Invalid argument" in reason
    else:
        assert reason is None, reason
