import os
import random

import pytest

from storage import LogStore, MemoryBackend


@pytest.fixture
def seed() -> int:
    """A randomised test's seed: printed on failure by pytest's -ra summary through the test id; SEED=n replays."""
    return int(os.environ.get("SEED", "1"))


@pytest.fixture
def rng(seed) -> random.Random:
    print(f"SEED={seed}")
    return random.Random(seed)


@pytest.fixture(params=["memory", "logstore"])
def backend(request, tmp_path):
    """Each conformance test runs against both backends."""
    if request.param == "memory":
        store = MemoryBackend()
    else:
        store = LogStore.open(str(tmp_path / "store"), background=False, segment_bytes_max=4096)
    yield store
    store.close()
