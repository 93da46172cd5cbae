"""The figures and the report of a checked run, and `check <dir>` end to end.

How: a hand-made history with two fault windows gives known availability and failover figures; then a saved
run directory is checked offline by `check_main`, which must write timeline.html (violating operations
outlined), latency-raw.png, rate.png and results.json next to the history, print the summary, and exit 0 on a
pass, 1 on a violation, 2 on "unknown" and 3 on a malformed history.
"""

import json
import random

from jepsen_lite.checkcli import check_main
from jepsen_lite.checker import check

from .histories import add, read, records, set_read, write
from .simulate import simulate_register, stale_read_mutation, tick_ns

S = 1_000_000_000


def test_availability_and_failover_per_fault_window():
    history = records(write(0, 1 * S, 2 * S, "a", 1),
                      write(0, 11 * S, 12 * S, "b", type="fail", error="not-sent"),
                      read(1, 12 * S, 13 * S, "a", 1),
                      write(0, 13 * S, 15 * S, "c", 2),
                      write(0, 31 * S, 32 * S, "d", 3),
                      faults=[("kill-leader", 10 * S, 20 * S), ("pause-leader", 30 * S, 40 * S)])
    perf = check(history)["perf"]
    kill, pause = perf["windows"]
    assert (kill["fault"], kill["ops"], kill["availability"], kill["failover_s"]) == ("kill-leader", 3, 0.6667, 5.0)
    assert (pause["availability"], pause["failover_s"]) == (1.0, 2.0)
    assert perf["availability"]["outside"] == 1.0
    assert perf["availability"]["by_fault"] == {"kill-leader": 0.6667, "pause-leader": 1.0}
    assert perf["failover_s"] == {"windows": 2, "recovered": 2, "p50": 2.0, "max": 5.0}
    assert perf["longest_write_gap_s"] == 17.0
    assert perf["types"] == {"ok": 4, "fail": 1, "info": 0}


def save(directory, history: list[dict]) -> None:
    lines = [json.dumps({"meta": {"run": "test-s1", "seed": 1, "nodes": {"n1": "127.0.0.11:8201"}}})]
    (directory / "history.jsonl").write_text("\n".join(lines + [json.dumps(record) for record in history]) + "\n")


def test_a_passing_run_is_reported_and_exits_0(tmp_path, capsys):
    history = records(*simulate_register(random.Random(1)), add(90, 0, 10, 1), set_read(91, 500 * tick_ns,
                      510 * tick_ns, [1], final=True, node="n1"), faults=[("partition-leader", 100 * tick_ns,
                                                                           300 * tick_ns)])
    save(tmp_path, history)
    assert check_main(tmp_path) == 0
    summary = capsys.readouterr().out
    assert "VERDICT        PASS" in summary
    assert "linearizable   YES" in summary and "partition-leader" in summary
    assert "lost writes    0  (register keys 0, set elements 0)" in summary
    assert (tmp_path / "latency-raw.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "rate.png").read_bytes().startswith(b"\x89PNG")
    assert json.loads((tmp_path / "results.json").read_text())["valid"] is True
    page = (tmp_path / "timeline.html").read_text()
    assert "partition-leader" in page and "violation" not in page.split("</style>")[1]


def test_a_violating_run_is_outlined_and_exits_1(tmp_path, capsys):
    save(tmp_path, records(*stale_read_mutation(simulate_register(random.Random(2)))))
    assert check_main(tmp_path / "history.jsonl") == 1, "the history file itself may be named too"
    assert "VERDICT        FAIL" in capsys.readouterr().out
    result = json.loads((tmp_path / "results.json").read_text())
    page = (tmp_path / "timeline.html").read_text()
    first = result["violating_ops"][0]
    assert f'href="#op-{first}"' in page
    assert all(f'violation" id="op-{op_id}"' in page for op_id in result["violating_ops"])


def test_an_undecided_run_exits_2(tmp_path, capsys):
    save(tmp_path, records(add(0, 0, 10, 1)))
    assert check_main(tmp_path) == 2
    assert "VERDICT        UNKNOWN  (set UNKNOWN)" in capsys.readouterr().out


def test_a_malformed_history_exits_3_naming_the_line(tmp_path, capsys):
    save(tmp_path, records(add(0, 0, 10, 1)))
    with (tmp_path / "history.jsonl").open("a") as history:
        history.write("{oops\n")
    assert check_main(tmp_path) == 3
    assert "line 4" in capsys.readouterr().err
    assert check_main(tmp_path / "missing") == 3
