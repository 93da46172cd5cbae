"""A hypothesis state machine drives LogStore against a dict model: puts, deletes, lists, rolls, hint
writes, compaction, reopen, and snapshot export/restore. After every step every key reads as the model says
and LIST gives the model's children. Small segments make rolls and compactions frequent."""

import io
import shutil
import tempfile

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from storage import LogStore


def children_of(model: dict, prefix: str) -> list[str]:
    """The oracle for LIST, written the plain way: strip the prefix, keep up to and including the first '/'."""
    children = set()
    for key in model:
        if key.startswith(prefix):
            rest = key[len(prefix) :]
            children.add(rest.split("/")[0] + "/" if "/" in rest else rest)
    return sorted(children)

keys = st.sampled_from([f"{folder}{name}" for folder in ("", "a/", "a/b/", "c/") for name in ("x", "y", "z")])
values = st.binary(min_size=0, max_size=300)


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="logstore-stateful-")
        self.store = self._open()
        self.model: dict[str, bytes] = {}
        self.index = 0

    def _open(self) -> LogStore:
        return LogStore.open(self.directory, background=False, segment_bytes_max=512)

    def _apply(self, ops: list) -> None:
        self.index += 1
        self.store.apply(self.index, ops)
        for op, key, value in ops:
            if op == "put":
                self.model[key] = value
            else:
                self.model.pop(key, None)

    @rule(key=keys, value=values)
    def put(self, key, value):
        self._apply([("put", key, value)])

    @rule(key=keys)
    def delete(self, key):
        self._apply([("delete", key, None)])

    @rule(ops=st.lists(st.tuples(st.sampled_from(["put", "delete"]), keys, values), max_size=6))
    def batch(self, ops):
        self._apply([(op, key, value if op == "put" else None) for op, key, value in ops])

    @rule()
    def maintain(self):
        self.store.maintain()

    @rule(include_active=st.booleans())
    def compact(self, include_active):
        self.store.compact(include_active=include_active)

    @rule()
    def reopen(self):
        self.store.close()
        self.store = self._open()
        assert self.store.applied_index == self.index

    @precondition(lambda self: self.index > 0)
    @rule()
    def snapshot_round_trip(self):
        stream = io.BytesIO()
        self.store.export_snapshot(stream)
        self.store.close()
        shutil.rmtree(self.directory)
        stream.seek(0)
        LogStore.install_snapshot(self.directory, stream)
        self.store = self._open()
        assert self.store.applied_index == self.index

    @rule(prefix=st.sampled_from(["", "a/", "a/b/", "c/", "nothing/"]))
    def listing(self, prefix):
        assert self.store.list(prefix) == children_of(self.model, prefix)

    @invariant()
    def every_key_reads_as_the_model_says(self):
        for folder in ("", "a/", "a/b/", "c/"):
            for name in ("x", "y", "z"):
                assert self.store.get(folder + name) == self.model.get(folder + name)
        assert len(self.store) == len(self.model)

    def teardown(self):
        self.store.close()
        shutil.rmtree(self.directory, ignore_errors=True)


StoreMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
test_store_matches_a_dict_model = StoreMachine.TestCase
