"""kill -9 of a writer process, 60 rounds, checked against what it acknowledged.

Each round starts tests/storage/kill_writer.py on the same data dir, lets it run for a random few
milliseconds, and SIGKILLs it: mid-write (values up to 400 kB tear), mid-roll, mid-hint, mid-compaction.
Then the store is reopened here: every acknowledged batch must be there, the state must equal the model at
the recovered index exactly, and the store must take the next write. Seeded: SEED=n replays a run.
"""

import pathlib
import signal
import subprocess
import sys
import time

from storage import LogStore

from .kill_writer import batch_for

ROOT = pathlib.Path(__file__).resolve().parents[2]
rounds = 60


class Model:
    def __init__(self) -> None:
        self.index = 0
        self.values: dict[str, bytes] = {}

    def advance_to(self, index: int) -> None:
        for next_index in range(self.index + 1, index + 1):
            for op, key, value in batch_for(next_index):
                if op == "put":
                    self.values[key] = value
                else:
                    self.values.pop(key, None)
        self.index = index


def run_round(directory: pathlib.Path, delay_seconds: float) -> int:
    """Start the writer, kill it after the delay, return the last index it acknowledged."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.storage.kill_writer", str(directory)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        time.sleep(delay_seconds)
    finally:
        process.send_signal(signal.SIGKILL)
        output, errors = process.communicate(timeout=60)
    if process.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"the writer failed: {errors.decode()[-2000:]}")
    acknowledged = [int(line) for line in output.decode().split("\n")[:-1]]
    return acknowledged[-1] if acknowledged else 0


def test_kill_minus_nine_loses_no_acknowledged_write(tmp_path, rng):
    directory = tmp_path / "store"
    model = Model()
    acknowledged_total = 0
    for round_number in range(rounds):
        acknowledged = run_round(directory, rng.uniform(0.15, 0.6))
        with LogStore.open(str(directory), background=False) as store:
            recovered = store.applied_index
            assert recovered >= acknowledged, f"round {round_number}: acknowledged {acknowledged}, got {recovered}"
            assert recovered >= model.index
            model.advance_to(recovered)
            state = {f"app/{child}": store.get(f"app/{child}") for child in store.list("app/")}
            assert state == model.values, f"round {round_number}: state differs from the model at {recovered}"
            store.apply(recovered + 1, batch_for(recovered + 1))
            model.advance_to(recovered + 1)
        acknowledged_total = max(acknowledged_total, acknowledged)
    assert acknowledged_total > rounds, "the writer barely ran; the kills tested nothing"
