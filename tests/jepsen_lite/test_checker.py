"""The register checkers, WGL and the version checker, on hand-made histories and on simulated ones.

How: each hand-made history is a few operations with their intervals, written through the real writer, and
the expected verdict is argued in the test: linearizable ones (Porcupine's README example, tie timestamps,
indeterminate writes that happened and ones that did not) must pass; violating ones (a stale read, a lost
acknowledged write, two CAS winners on one version, a CAS acknowledged on the wrong version, a wrongly refused
CAS, a failed write that is read) must fail, naming the operations; a search out of budget says "unknown",
never True. Then a simulated linearizable register with concurrent clients must always pass, and the same
history with one read made stale must always fail. The random tests print their seed; SEED=n replays one.
"""

import os
import random

import pytest

from jepsen_lite.checker import check

from .histories import cas, read, records, write
from .simulate import simulate_register, stale_read_mutation


def verdicts(*specs, budget=None):
    result = check(records(*specs)) if budget is None else check(records(*specs), budget)
    return result["valid"], result["register"]["valid"], result["version"]["valid"], result


def test_porcupine_readme_history_that_is_linearizable():
    # the second reader reads before the write takes effect, the first after: both inside the write's interval
    valid, register, version, _ = verdicts(write(0, 0, 100, "a", 1), read(1, 25, 75, "a", 1), read(2, 30, 60))
    assert (valid, register, version) == (True, True, True)


def test_porcupine_readme_history_that_is_not():
    # the first read saw the write, completed, and then a later read did not: no order explains both
    valid, register, version, result = verdicts(write(0, 0, 100, "a", 1), read(1, 10, 30, "a", 1),
                                                read(2, 40, 90))
    assert (valid, register, version) == (False, False, False)
    key = result["register"]["keys"]["reg/k0"]
    assert key["stuck_at"] == 3 and key["longest_prefix_length"] == 2
    assert result["version"]["stale_reads"]["first"][0]["ops"] == [3, 1]
    assert {1, 3} <= set(result["violating_ops"])


def test_equal_times_are_concurrent():
    # closed intervals: a read invoked the instant a write returns may still precede it
    assert verdicts(write(0, 0, 10, "a", 1), read(1, 10, 20))[:3] == (True, True, True)


def test_a_stale_read_after_an_acknowledged_write_fails():
    valid, register, version, result = verdicts(write(0, 0, 10, "a", 1), write(0, 20, 30, "b", 2),
                                                read(1, 40, 50, "a", 1), read(1, 60, 70, "b", 2))
    assert (valid, register, version) == (False, False, False)
    assert result["version"]["stale_reads"]["count"] == 1
    assert result["version"]["lost"]["count"] == 0, "the last read saw the acknowledged version again"


def test_a_lost_acknowledged_write_fails():
    valid, register, version, result = verdicts(write(0, 0, 10, "a", 1), write(0, 20, 30, "b", 2),
                                                read(1, 40, 50, "a", 1))
    assert (valid, register, version) == (False, False, False)
    assert result["version"]["lost"]["first"] == [{"key": "reg/k0", "ops": [4, 2], "version": 1,
                                                    "newer_version": 2}]


def test_two_cas_winners_on_one_version_fail():
    valid, register, version, result = verdicts(cas(0, 0, 10, 0, "a", 1), cas(1, 5, 15, 0, "b", 1))
    assert (valid, register, version) == (False, False, False)
    assert result["version"]["conflicts"]["first"][0]["values"] == ["a", "b"]


def test_a_cas_acknowledged_on_the_wrong_version_fails():
    # only the search sees this one: the versions themselves are in order
    valid, register, version, _ = verdicts(write(0, 0, 10, "a", 1), cas(0, 20, 30, 5, "b", 2))
    assert (valid, register, version) == (False, False, True)


def test_a_cas_refused_on_the_right_version_fails_and_one_not_sent_is_ignored():
    refused = verdicts(write(0, 0, 10, "a", 1), cas(0, 20, 30, 1, "b", type="fail", error="cas-mismatch"))
    not_sent = verdicts(write(0, 0, 10, "a", 1), cas(0, 20, 30, 1, "b", type="fail", error="not-sent"))
    rightly_refused = verdicts(write(0, 0, 10, "a", 1), cas(0, 20, 30, 0, "b", type="fail", error="cas-mismatch"))
    assert refused[1] is False
    assert not_sent[0] is True and rightly_refused[0] is True


def test_a_failed_write_that_is_read_fails():
    valid, register, version, result = verdicts(write(0, 0, 10, "a", type="fail", error="not-sent"),
                                                read(1, 20, 30, "a", 1))
    assert (valid, register, version) == (False, False, False)
    assert result["version"]["phantoms"]["first"] == [{"key": "reg/k0", "ops": [2], "value": "a"}]


@pytest.mark.parametrize(("observed", "why"), [
    ([read(1, 20, 30, "a", 1)], "it happened before the read"),
    ([read(1, 20, 30)], "it never happened"),
    ([read(1, 20, 30), read(1, 40, 50, "a", 1)], "it happened after its client gave up, between the reads"),
    ([read(1, 20, 30), read(1, 40, 50)], "it never happened, or has not yet"),
])
def test_an_indeterminate_write_may_have_happened_or_not(observed, why):
    assert verdicts(write(0, 0, 10, "a", type="info"), *observed)[:3] == (True, True, True), why


def test_an_indeterminate_write_cannot_unhappen():
    valid, register, _, _ = verdicts(write(0, 0, 10, "a", type="info"), read(1, 20, 30, "a", 1), read(1, 40, 50))
    assert (valid, register) == (False, False)


def test_an_indeterminate_write_that_never_completed_counts_as_info():
    assert verdicts(write(0, 0, None, "a"), read(1, 20, 30, "a", 1))[:3] == (True, True, True)


def test_indeterminate_cas_either_way_and_only_on_its_version():
    assert verdicts(cas(0, 0, 10, 0, "a", type="info"), read(1, 20, 30, "a", 1))[0] is True
    assert verdicts(cas(0, 0, 10, 0, "a", type="info"), read(1, 20, 30))[0] is True
    wrong_version = verdicts(write(0, 0, 5, "x", 1), cas(1, 10, 20, 0, "a", type="info"), read(2, 30, 40, "a", 2))
    assert wrong_version[1] is False, "a cas on version 0 cannot apply once the key is at version 1"


def test_keys_are_checked_apart():
    valid, register, _, result = verdicts(write(0, 0, 10, "a", 1, key="reg/k1"), read(1, 20, 30, key="reg/k2"),
                                          read(2, 20, 30, "a", 1, key="reg/k1"))
    assert (valid, register) == (True, True)
    assert sorted(result["register"]["keys"]) == ["reg/k1", "reg/k2"]


def test_a_search_out_of_budget_says_unknown_never_valid():
    specs = [write(p, p, 100 + p, f"v{p}", type="info") for p in range(8)] + [read(9, 200, 210, "v3", 1)]
    valid, register, version, result = verdicts(*specs, budget=5)
    assert (valid, register, version) == ("unknown", "unknown", True)
    assert "budget of 5 steps" in result["register"]["keys"]["reg/k0"]["reason"]
    assert verdicts(*specs)[0] is True, "with its full budget the same history passes"


def test_unknown_never_hides_a_violation():
    specs = [write(p, p, 100 + p, f"v{p}", type="info") for p in range(8)] + [
        write(20, 0, 10, "a", 1, key="reg/k1"), read(21, 20, 30, key="reg/k1")]
    valid, register, _, _ = verdicts(*specs, budget=5)
    assert (valid, register) == (False, False)


def test_no_client_operation_is_unknown():
    result = check(records())
    assert result["valid"] == "unknown"
    assert result["reason"] == "the history holds no client operation"


def test_the_version_checker_sees_write_order_and_version_zero_values():
    order = verdicts(write(0, 0, 10, "a", 1), write(0, 20, 30, "b", 1))[3]["version"]
    assert order["write_order"]["count"] == 1 and order["conflicts"]["count"] == 1
    absent = verdicts(write(0, 0, 10, "a", type="info"), read(1, 20, 30, "a", 0))[3]["version"]
    assert absent["conflicts"]["first"][0]["values"] == [None, "a"]


def _seeds(count: int) -> list[int]:
    base = int(os.environ.get("SEED", random.randrange(1 << 30)))
    print(f"SEED={base}")
    return [base + offset for offset in range(count)] if "SEED" not in os.environ else [base]


def test_a_simulated_linearizable_register_always_passes():
    for seed in _seeds(40):
        specs = simulate_register(random.Random(seed))
        result = check(records(*specs))
        assert result["valid"] is True, f"SEED={seed}: {result['register']} {result['version']}"


def test_a_simulated_register_with_one_stale_read_always_fails():
    failed = 0
    for seed in _seeds(40):
        stale = stale_read_mutation(simulate_register(random.Random(seed)))
        if stale is None:
            continue
        result = check(records(*stale))
        assert (result["register"]["valid"], result["version"]["valid"]) == (False, False), f"SEED={seed}"
        failed += 1
    assert failed > 0, "no simulated history had a read to make stale"
