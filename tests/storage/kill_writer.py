"""The writer that test_kill9.py kills: applies deterministic batches and acknowledges each on stdout.

    python -m tests.storage.kill_writer DIR

Batch `i` is a pure function of `i` (see `batch_for`), so the parent can rebuild the model. Segments are
small and maintenance runs often, so kills also land in rolls, hint writes and compactions.
"""

import random
import sys

from storage import LogStore

keys = [f"app/{i}" for i in range(40)]
segment_bytes_max = 256 * 1024
applies_max = 400


def batch_for(index: int) -> list:
    rng = random.Random(index)
    ops = []
    for _ in range(rng.randint(1, 8)):
        key = rng.choice(keys)
        if rng.random() < 0.25:
            ops.append(("delete", key, None))
        else:
            size = 400_000 if rng.random() < 0.05 else rng.randint(1, 3000)
            ops.append(("put", key, rng.randbytes(size)))
    return ops


def main(directory: str) -> None:
    store = LogStore.open(directory, segment_bytes_max=segment_bytes_max, background=False)
    first = store.applied_index + 1
    for index in range(first, first + applies_max):
        store.apply(index, batch_for(index))
        sys.stdout.write(f"{index}\n")
        sys.stdout.flush()
        if index % 25 == 0:
            store.maintain()
    store.close()


if __name__ == "__main__":
    main(sys.argv[1])
