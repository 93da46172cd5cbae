"""The history file: what the writer writes, the reader reads back unchanged, and the reader refuses a malformed
line by naming it.

How: a writer on a fake clock writes invocations, completions and a fault, and `load` must return exactly the
records the writer returned; threads writing at once must still give a valid file; then one bad line at a
time is appended to a valid history, and `load` must refuse it with the file, the line number and the reason.
"""

import json
import threading

import pytest

from jepsen_lite.history import History, HistoryError, load, read_meta


class FakeClock:
    def __init__(self, now: int = 5_000):
        self.now = now

    def __call__(self) -> int:
        return self.now


def test_what_the_writer_writes_the_reader_reads(tmp_path):
    path, clock = tmp_path / "history.jsonl", FakeClock()
    with History(path, {"run": "r1", "seed": 7}, clock=clock) as history:
        writer, reader = history.fresh_process(), history.fresh_process()
        written = history.invoke(writer, "write", "reg/k0", "0-1", node="n1")
        clock.now += 10
        asked = history.invoke(reader, "read", "reg/k0")
        clock.now += 10
        fault = history.nemesis("partition-leader", target="n1", grudge={"n1": ["n2"], "n2": ["n1"]})
        done = [history.complete(written, "ok", version=1, index_token="12"),
                history.complete(asked, "ok", "0-1", version=1)]
        clock.now += 10
        stop = history.nemesis_end(fault)
    records = [written, asked, fault, *done, stop]
    assert load(path) == records
    assert read_meta(path) == {"run": "r1", "seed": 7}
    assert [record["index"] for record in records] == list(range(6))
    assert [record["time"] for record in records] == [0, 10, 20, 20, 20, 30]
    assert done[0]["value"] == "0-1" and done[0]["node"] == "n1", "a completion repeats value and node"
    assert stop["value"] == {"fault": "partition-leader", "start": fault["index"]}
    assert (writer, reader) == (0, 1)


def test_threads_writing_at_once_leave_a_valid_history(tmp_path):
    path = tmp_path / "history.jsonl"
    history = History(path, {})

    def worker():
        process = history.fresh_process()
        for number in range(200):
            invocation = history.invoke(process, "add", "set/s0", f"{process}-{number}")
            history.complete(invocation, "ok")

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    history.close()
    records = load(path)
    assert len(records) == 8 * 200 * 2
    assert len({record["process"] for record in records}) == 8


def test_the_writer_refuses_a_record_the_reader_would(tmp_path):
    history = History(tmp_path / "history.jsonl", {})
    with pytest.raises(HistoryError, match="keys are reg/"):
        history.invoke(0, "read", "registry/k0")
    with pytest.raises(HistoryError, match="unknown fields"):
        history.invoke(0, "read", "reg/k0", nod="n1")
    invocation = history.invoke(0, "write", "reg/k0", "a")
    history.complete(invocation, "info", error="timeout")
    with pytest.raises(HistoryError, match="fresh id"):
        history.invoke(0, "read", "reg/k0")
    history.close()
    assert len(load(tmp_path / "history.jsonl")) == 2, "a refused record is not written"


GOOD = [
    {"index": 0, "time": 10, "process": 0, "type": "invoke", "f": "write", "key": "reg/k0", "value": "a"},
    {"index": 1, "time": 20, "process": 0, "type": "info", "f": "write", "key": "reg/k0", "value": "a"},
    {"index": 2, "time": 30, "process": 1, "type": "invoke", "f": "cas", "key": "reg/k0", "value": [0, "b"]},
    {"index": 3, "time": 40, "process": "nemesis", "type": "info", "f": "start", "value": {"fault": "kill-leader"}},
]
NEXT = {"index": 4, "time": 50}


@pytest.mark.parametrize(("line", "reason"), [
    ("{not json", "line 6: Expecting property name"),
    ("[1, 2]", "line 6: a record must be a JSON object"),
    (json.dumps({**NEXT, "index": 5, "process": 1, "type": "ok", "f": "cas", "key": "reg/k0", "value": [0, "b"]}),
     "index must be 4"),
    (json.dumps({**NEXT, "time": 39, "process": 1, "type": "ok", "f": "cas", "key": "reg/k0", "value": [0, "b"]}),
     "time must be an int of ns, at least 40"),
    (json.dumps({**NEXT, "process": 1, "type": "ok", "f": "cas", "key": "reg/k0"}), "missing fields ['value']"),
    (json.dumps({**NEXT, "process": 1, "type": "ok", "f": "cas", "key": "reg/k0", "value": [0, "b"], "ver": 1}),
     "unknown fields ['ver']"),
    (json.dumps({**NEXT, "process": 1, "type": "ok", "f": "cas", "key": "reg/k0", "value": [0, "b"],
                 "version": "1"}), "field version has the wrong type"),
    (json.dumps({**NEXT, "process": 1, "type": "done", "f": "cas", "key": "reg/k0", "value": [0, "b"]}),
     "type must be invoke, ok, fail or info"),
    (json.dumps({**NEXT, "process": 2, "type": "ok", "f": "read", "key": "reg/k0", "value": None}),
     "process 2 completes an op it never invoked"),
    (json.dumps({**NEXT, "process": 1, "type": "ok", "f": "write", "key": "reg/k0", "value": [0, "b"]}),
     "the completion's f 'write' differs"),
    (json.dumps({**NEXT, "process": 1, "type": "ok", "f": "cas", "key": "reg/k0", "value": [1, "b"]}),
     "must repeat the invocation's value"),
    (json.dumps({**NEXT, "process": 1, "type": "invoke", "f": "read", "key": "reg/k0", "value": None}),
     "process 1 invokes while its op 2 is outstanding"),
    (json.dumps({**NEXT, "process": 0, "type": "invoke", "f": "read", "key": "reg/k0", "value": None}),
     "process 0 invokes after an info completion"),
    (json.dumps({**NEXT, "process": 3, "type": "invoke", "f": "add", "key": "reg/k0", "value": 1}),
     "keys are reg/..., session/... or set/..."),
    (json.dumps({**NEXT, "process": 3, "type": "invoke", "f": "cas", "key": "reg/k0", "value": "b"}),
     "a cas value is [expected_version, new_value]"),
    (json.dumps({**NEXT, "process": 3, "type": "invoke", "f": "read", "key": "reg/k0", "value": "x"}),
     "a read's invocation has value null"),
    (json.dumps({**NEXT, "process": -1, "type": "invoke", "f": "read", "key": "reg/k0", "value": None}),
     "process must be an int >= 0"),
    (json.dumps({**NEXT, "process": "nemesis", "type": "info", "f": "stop", "value": {"fault": "kill-leader",
                                                                                      "start": 2}}),
     "must name its unfinished start, not 2"),
    (json.dumps({**NEXT, "process": "nemesis", "type": "info", "f": "start", "value": "partition"}),
     'a nemesis value is an object naming its "fault"'),
])
def test_the_reader_refuses_a_malformed_line_by_naming_it(tmp_path, line, reason):
    path = tmp_path / "history.jsonl"
    path.write_text("\n".join([json.dumps({"meta": {}}), *map(json.dumps, GOOD), line]) + "\n")
    with pytest.raises(HistoryError, match="line 6") as refused:
        load(path)
    assert str(path) in str(refused.value)
    assert reason in str(refused.value)


def test_the_reader_accepts_the_good_prefix(tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_text("\n".join([json.dumps({"meta": {}}), *map(json.dumps, GOOD)]) + "\n")
    assert load(path) == GOOD


@pytest.mark.parametrize("first", ["", "{}", '{"run": 1}', '{"meta": []}', json.dumps(GOOD[0])])
def test_the_first_line_must_be_the_meta_record(tmp_path, first):
    path = tmp_path / "history.jsonl"
    path.write_text(first + "\n")
    with pytest.raises(HistoryError, match='line 1: the first line must be {"meta"'):
        load(path)
