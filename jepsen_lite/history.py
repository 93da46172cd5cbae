"""The history of a run: JSON lines (jepsen.md §6.4), written while the run goes, re-read by the checkers.

Line 1 is the run's metadata, `{"meta": {...}}`: an object of free-form facts (run id, seed, nodes, workloads).
Every later line is one record:

    field        on               meaning
    index        every record     0, 1, 2, ...: the record's position after the meta line
    time         every record     ns since the history began (the harness's time.monotonic_ns); never decreases
    process      every record     a client process, an int >= 0; or "nemesis"
    type         every record     "invoke"; then "ok" (it happened), "fail" (it did not) or "info" (unknown)
    f            every record     register: "read" | "write" | "cas"; session: "read" | "write";
                                  set: "add" | "read"; nemesis: "start" | "stop"
    key          client           "reg/<k>" | "session/<k>" | "set/<name>": the first segment names the workload
    value        client           invoke: write -> the new value; cas -> [expected_version, new_value];
                                  add -> the element (a string or an int); read -> null.
                                  ok read -> what it read: the value (null when the key is absent), or for a
                                  set the list of elements. Every other completion repeats the invoke's value.
    value        nemesis          an object: "fault" names it ("partition-leader", ...), plus its details; a
                                  stop's value also holds "start", the index of the start record it ends
    node         client, opt.     the node the request went to (a completion repeats it)
    index_token  invoke, opt.     session read: the X-Vault-Index sent; absent or null: an untokenised read
    forward      invoke, opt.     session read: true when sent with X-Vault-Inconsistent: forward-active-node
    final        invoke, opt.     set read: true in the final phase (after heal and quiesce), on every node
    version      completion, opt. an ok's KV v2 version, written or read; 0 when the key is absent
    index_token  completion, opt. the X-Vault-Index the answer carried
    http_status  completion, opt. the answer's HTTP status
    error        completion, opt. why it is not ok; "cas-mismatch" marks a CAS the server refused (400)
    latency_ms   completion, opt. informative only: the checkers use `time`

Rules the checkers rely on, enforced by the writer and the reader alike:
- a process has at most one invocation outstanding; its completion repeats its f, key and node;
- a process whose operation ended "info" never invokes again: the worker goes on under `fresh_process()`;
- an invocation still outstanding when the history ends is unknown (the checker completes it as "info").

The writer, `History`, is thread-safe: each call takes the time, numbers the record, writes and flushes one
line under one lock, and returns the record. `load(path)` reads a history back and refuses the first malformed
line with a `HistoryError` naming the file and line; `read_meta(path)` returns line 1.
"""

import json
import threading
import time

from .errors import HarnessError

CAS_MISMATCH = "cas-mismatch"
WORKLOAD_FUNCTIONS = {"reg": {"read", "write", "cas"}, "session": {"read", "write"}, "set": {"add", "read"}}
COMPLETION_TYPES = ("ok", "fail", "info")
_INVOKE_FIELDS = {"node": str, "index_token": (str, type(None)), "forward": bool, "final": bool}
_COMPLETION_FIELDS = {"node": str, "version": int, "index_token": (str, type(None)), "http_status": int,
                      "error": str, "latency_ms": (int, float)}
_CLIENT_FIELDS = {"index", "time", "process", "type", "f", "key", "value"}
_NEMESIS_FIELDS = {"index", "time", "process", "type", "f", "value"}


class HistoryError(HarnessError):
    """A record the history format refuses; the message names the file and line when reading."""


class History:
    """The writer. `meta` becomes line 1; `clock` gives monotonic ns (injected by tests)."""

    def __init__(self, path, meta: dict, clock=time.monotonic_ns):
        self._clock = clock
        self._origin = clock()
        self._lock = threading.Lock()
        self._ledger = _Ledger()
        self._processes = 0
        self._file = open(path, "w", encoding="utf-8")  # noqa: SIM115 - close() closes it
        self._file.write(json.dumps({"meta": meta}) + "\n")
        self._file.flush()

    def fresh_process(self) -> int:
        """A client process id never handed out before: one per worker at start, and one after each info."""
        with self._lock:
            self._processes += 1
            return self._processes - 1

    def invoke(self, process: int, f: str, key: str, value=None, **fields) -> dict:
        """Record an invocation, just before the request is sent. `fields`: node, index_token, forward, final."""
        return self._write({"process": process, "type": "invoke", "f": f, "key": key, "value": value, **fields})

    def complete(self, invocation: dict, type: str, value=None, **outputs) -> dict:
        """Record how `invocation` ended, just after the answer is parsed. `value` None repeats the invocation's;
        a read passes what it read. `outputs`: version, index_token, http_status, error, latency_ms."""
        record = {"process": invocation["process"], "type": type, "f": invocation["f"], "key": invocation["key"],
                  "value": invocation["value"] if value is None else value}
        if "node" in invocation:
            record["node"] = invocation["node"]
        return self._write({**record, **outputs})

    def nemesis(self, fault: str, **details) -> dict:
        """Record that a fault starts; `details` (target, grudge, ...) must be JSON."""
        return self._write({"process": "nemesis", "type": "info", "f": "start", "value": {"fault": fault, **details}})

    def nemesis_end(self, start: dict, **details) -> dict:
        """Record that the fault `start` (what nemesis() returned) is over."""
        value = {"fault": start["value"]["fault"], "start": start["index"], **details}
        return self._write({"process": "nemesis", "type": "info", "f": "stop", "value": value})

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _write(self, fields: dict) -> dict:
        with self._lock:
            record = {"index": self._ledger.next_index, "time": self._clock() - self._origin, **fields}
            line = json.dumps(record)  # before admit: a value that is not JSON must leave the ledger as it was
            self._ledger.admit(record)
            self._file.write(line + "\n")
            self._file.flush()
            return record


def read_meta(path) -> dict:
    """Line 1 of the history at `path`."""
    with open(path, encoding="utf-8") as lines:
        return _meta(path, lines.readline())


def load(path) -> list[dict]:
    """Every record after the meta line, each validated against the format and the rules above."""
    ledger = _Ledger()
    records = []
    with open(path, encoding="utf-8") as lines:
        _meta(path, lines.readline())
        for number, line in enumerate(lines, start=2):
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise HistoryError("a record must be a JSON object")
                ledger.admit(record)
            except (ValueError, HistoryError) as error:
                raise HistoryError(f"{path} line {number}: {error}") from None
            records.append(record)
    return records


def _meta(path, line: str) -> dict:
    try:
        document = json.loads(line)
    except ValueError:
        document = None
    if not isinstance(document, dict) or list(document) != ["meta"] or not isinstance(document["meta"], dict):
        raise HistoryError(f'{path} line 1: the first line must be {{"meta": {{...}}}}')
    return document["meta"]


class _Ledger:
    """What the records so far imply about the next: its index, the earliest time, the processes outstanding
    or retired, the faults under way. `admit` raises HistoryError for a record that breaks the format."""

    def __init__(self):
        self.next_index = 0
        self.last_time = 0
        self.outstanding: dict[int, dict] = {}  # process -> its invocation
        self.retired: set[int] = set()  # processes whose last operation ended info
        self.faults: dict[int, str] = {}  # index of an unfinished start record -> its fault

    def admit(self, record: dict) -> None:
        index, moment = record.get("index"), record.get("time")
        if not _is_int(index) or index != self.next_index:
            raise HistoryError(f"index must be {self.next_index}, found {index!r}")
        if not _is_int(moment) or moment < self.last_time:
            raise HistoryError(f"time must be an int of ns, at least {self.last_time}; found {moment!r}")
        if record.get("process") == "nemesis":
            self._admit_nemesis(record)
        else:
            self._admit_client(record)
        self.next_index, self.last_time = index + 1, moment

    def _admit_nemesis(self, record: dict) -> None:
        _require_fields(record, _NEMESIS_FIELDS, {})
        value = record["value"]
        if record["type"] != "info" or record["f"] not in ("start", "stop"):
            raise HistoryError('a nemesis record has type "info" and f "start" or "stop"')
        if not isinstance(value, dict) or not isinstance(value.get("fault"), str):
            raise HistoryError('a nemesis value is an object naming its "fault"')
        start = value.get("start")
        if record["f"] == "start":
            self.faults[record["index"]] = value["fault"]
        elif not _is_int(start) or self.faults.get(start) != value["fault"]:
            raise HistoryError(f"a stop of {value['fault']!r} must name its unfinished start, not {start!r}")
        else:
            del self.faults[start]

    def _admit_client(self, record: dict) -> None:
        process = record.get("process")
        if not _is_int(process) or process < 0:
            raise HistoryError(f'process must be an int >= 0 or "nemesis", found {process!r}')
        if record.get("type") == "invoke":
            _require_fields(record, _CLIENT_FIELDS, _INVOKE_FIELDS)
            self._admit_invocation(record)
        elif record.get("type") in COMPLETION_TYPES:
            _require_fields(record, _CLIENT_FIELDS, _COMPLETION_FIELDS)
            self._admit_completion(record)
        else:
            raise HistoryError(f"type must be invoke, ok, fail or info; found {record.get('type')!r}")

    def _admit_invocation(self, record: dict) -> None:
        process = record["process"]
        if process in self.outstanding:
            raise HistoryError(f"process {process} invokes while its op {self.outstanding[process]['index']} is "
                               "outstanding")
        if process in self.retired:
            raise HistoryError(f"process {process} invokes after an info completion; it must take a fresh id")
        workload = record["key"].split("/", 1)[0] if isinstance(record["key"], str) else None
        if record["f"] not in WORKLOAD_FUNCTIONS.get(workload, ()):
            raise HistoryError(f"key {record['key']!r} with f {record['f']!r}: keys are reg/..., session/... or "
                               f"set/..., with f among {WORKLOAD_FUNCTIONS}")
        _check_value(workload, record["f"], "invoke", record["value"])
        self.outstanding[process] = record

    def _admit_completion(self, record: dict) -> None:
        invocation = self.outstanding.pop(record["process"], None)
        if invocation is None:
            raise HistoryError(f"process {record['process']} completes an op it never invoked")
        for field in ("f", "key", "node"):
            if record.get(field) != invocation.get(field):
                raise HistoryError(f"the completion's {field} {record.get(field)!r} differs from the invocation's "
                                   f"{invocation.get(field)!r} (index {invocation['index']})")
        if record["f"] == "read" and record["type"] == "ok":
            _check_value(invocation["key"].split("/", 1)[0], "read", "ok", record["value"])
        elif record["value"] != invocation["value"]:
            raise HistoryError(f"the completion must repeat the invocation's value {invocation['value']!r}")
        if record["type"] == "info":
            self.retired.add(record["process"])


def _require_fields(record: dict, required: set, optional: dict) -> None:
    missing = sorted(required - set(record))
    unknown = sorted(set(record) - required - set(optional))
    if missing or unknown:
        raise HistoryError(f"missing fields {missing}, unknown fields {unknown}" if missing and unknown else
                           f"missing fields {missing}" if missing else f"unknown fields {unknown}")
    for field, kinds in optional.items():
        if field in record and (not isinstance(record[field], kinds) or _is_bool_for_int(record[field], kinds)):
            raise HistoryError(f"field {field} has the wrong type: {record[field]!r}")


def _check_value(workload: str, f: str, type: str, value) -> None:
    if f == "read" and type == "invoke" and value is not None:
        raise HistoryError("a read's invocation has value null")
    if f == "cas" and not (isinstance(value, list) and len(value) == 2 and _is_int(value[0]) and value[0] >= 0):
        raise HistoryError(f"a cas value is [expected_version, new_value], found {value!r}")
    if f == "add" and not (isinstance(value, str) or _is_int(value)):
        raise HistoryError(f"a set element is a string or an int, found {value!r}")
    if workload == "set" and f == "read" and type == "ok" and not isinstance(value, list):
        raise HistoryError(f"an ok set read's value is the list of elements, found {value!r}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_bool_for_int(value, kinds) -> bool:
    return isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,))
