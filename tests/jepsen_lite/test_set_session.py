"""The set and session checkers on hand-made histories.

How: each history is a handful of adds and reads (set) or writes and tokenised or untokenised reads (session)
whose verdict is argued in the test: a set whose acknowledged adds all survive in identical final reads passes;
a lost add, an element nobody added, final reads that disagree, an add missing after it was acknowledged and
an element that flickers out each fail, naming the operations; no final read is "unknown". A session that reads
below its own write, or below its own earlier read, fails; a 412 is counted, not faulted; untokenised reads
are measured, not faulted.
"""

from jepsen_lite.checker import check

from .histories import SESSION, add, read, records, set_read, write


def set_result(*specs):
    result = check(records(*specs))
    return result["valid"], result["set"]["keys"]["set/s0"], result


def test_a_set_whose_acknowledged_adds_all_survive_passes():
    valid, found, _ = set_result(add(0, 0, 10, 1), add(1, 5, 15, 2), add(2, 6, 30, 3, type="info"),
                                 add(3, 7, 20, 4, type="fail"), set_read(4, 20, 25, [1, 2]),
                                 set_read(5, 100, 110, [1, 2, 3], final=True, node="n1"),
                                 set_read(6, 100, 120, [1, 2, 3], final=True, node="n2"))
    assert valid is True
    assert (found["acknowledged"], found["indeterminate"], found["recovered"]) == (2, 1, 1)
    assert found["converged"] is True and found["final_reads"] == 2


def test_a_lost_acknowledged_add_fails():
    valid, found, result = set_result(add(0, 0, 10, 1), add(1, 0, 10, 2), set_read(4, 100, 110, [2], final=True))
    assert valid is False
    assert found["lost"]["first"] == [{"element": 1, "ops": [0]}]
    assert 0 in result["violating_ops"]


def test_an_element_nobody_added_fails():
    valid, found, _ = set_result(add(0, 0, 10, 1), set_read(4, 100, 110, [1, 99], final=True))
    assert valid is False
    assert [finding["element"] for finding in found["unexpected"]["first"]] == [99]


def test_final_reads_that_disagree_fail():
    valid, found, _ = set_result(add(0, 0, 10, 1), add(1, 0, 10, 2, type="info"),
                                 set_read(4, 100, 110, [1, 2], final=True, node="n1"),
                                 set_read(5, 100, 110, [1], final=True, node="n2"))
    assert valid is False and found["converged"] is False
    assert found["divergent"]["first"][0] == {"node": "n2", "ops": [4, 5], "missing": [2], "extra": []}


def test_an_add_missing_after_it_was_acknowledged_fails():
    valid, found, _ = set_result(add(0, 0, 10, 1), set_read(4, 20, 30, []), set_read(5, 100, 110, [1], final=True))
    assert valid is False
    assert found["stale"]["first"] == [{"element": 1, "ops": [0, 2]}]


def test_an_element_that_flickers_out_fails():
    valid, found, _ = set_result(add(0, 0, 100, 1, type="info"), set_read(4, 20, 30, [1]), set_read(5, 40, 50, []),
                                 set_read(6, 200, 210, [1], final=True))
    assert valid is False
    assert found["flicker"]["first"] == [{"element": 1, "ops": [1, 3]}]


def test_a_set_without_a_final_read_is_unknown():
    valid, found, _ = set_result(add(0, 0, 10, 1), set_read(4, 20, 30, [1]),
                                 set_read(5, 100, 110, None, type="fail", final=True))
    assert valid == "unknown"
    assert found["final_reads_failed"] == 1
    assert "no final read" in found["reason"]


def session_result(*specs):
    result = check(records(*specs))
    return result["valid"], result["session"], result


def test_a_session_that_reads_its_writes_passes():
    valid, session, _ = session_result(write(0, 0, 10, "a", 1, key=SESSION, index_token="5"),
                                       read(0, 20, 30, "a", 1, key=SESSION, index_token="5"),
                                       read(0, 40, 50, key=SESSION, index_token="5", type="fail", http_status=412),
                                       read(0, 60, 70, "a", 1, key=SESSION, index_token="5", forward=True))
    assert valid is True
    assert (session["tokenised_reads"], session["retries_412"], session["forwarded_reads"]) == (3, 1, 1)


def test_a_tokenised_read_below_the_sessions_write_fails():
    valid, session, result = session_result(write(0, 0, 10, "a", 1, key=SESSION, index_token="5"),
                                             write(0, 20, 30, "b", 2, key=SESSION, index_token="6"),
                                             read(0, 40, 50, "a", 1, key=SESSION, index_token="6", forward=True))
    assert valid is False
    violation = session["violations"]["first"][0]
    assert (violation["kind"], violation["ops"], violation["forwarded"]) == ("read-your-writes", [2, 4], True)
    assert session["forwarded_stale"] == 1
    assert result["version"]["valid"] is True, "a session read may lag; only the session checker judges it"


def test_a_tokenised_read_below_the_sessions_last_read_fails():
    valid, session, _ = session_result(write(1, 0, 10, "a", 1, key=SESSION), write(1, 20, 30, "b", 2, key=SESSION),
                                       read(0, 40, 50, "b", 2, key=SESSION, index_token="9"),
                                       read(0, 60, 70, "a", 1, key=SESSION, index_token="9"))
    assert valid is False
    assert session["violations"]["first"][0]["kind"] == "monotonic-reads"


def test_a_write_index_that_goes_back_fails():
    valid, session, _ = session_result(write(0, 0, 10, "a", 1, key=SESSION, index_token="10"),
                                       write(0, 20, 30, "b", 2, key=SESSION, index_token="9"))
    assert valid is False
    assert session["token_regressions"]["first"] == [{"ops": [0, 2], "index_tokens": ["10", "9"]}]


def test_untokenised_reads_are_measured_not_faulted():
    ms = 1_000_000
    valid, session, _ = session_result(write(0, 0, 10 * ms, "a", 1, key=SESSION),
                                       write(0, 15 * ms, 20 * ms, "b", 2, key=SESSION),
                                       read(1, 50 * ms, 60 * ms, "a", 1, key=SESSION),
                                       read(1, 70 * ms, 80 * ms, "b", 2, key=SESSION))
    assert valid is True
    staleness = session["staleness"]
    assert (staleness["reads"], staleness["stale"], staleness["versions_behind_histogram"]) == (2, 1, {0: 1, 1: 1})
    assert staleness["ms_behind_max"] == 30.0, "read at 50 ms; version 2 acknowledged at 20 ms"
