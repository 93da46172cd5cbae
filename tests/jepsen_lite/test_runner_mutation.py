"""Testing the tester (issue 7): the whole suite, end to end, must catch a server that serves stale reads, and
must pass the same schedule on the real server.

Both tests run `python -m jepsen_lite run --profile smoke` (3 real vaultd nodes in a private network namespace,
45 s of workload, about a minute of wall time) with the same seed and faults: seed 5 puts a leader partition
first, then pauses and partitions of the leader. With `--unsafe-stale-reads` the nodes run the test-only server
setting that makes the leader skip its read barrier: the run must exit 1 with valid False, and the violation
must be one that setting causes (stale or lost reads, versions that disagree, a set read missing an
acknowledged add, a session read older than its token), not merely any finding. Without it the run must pass.

What each run found is printed (its summary and run.json), so a failure shows the history's directory; a run
that aborted (exit 3: a cut that did not take, no namespace) fails the test, since it proves nothing.
"""

import json
import pathlib
import shutil
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.timeout(240), pytest.mark.chaos]  # `make chaos` selects these; `make test` runs them too

repo_root = pathlib.Path(__file__).resolve().parents[2]
seed = 5  # partition-leader, pause-leader, partition-leader, pause-leader, pause-leader (nemesis.plan)
arguments = ["run", "--profile", "smoke", "--seed", str(seed), "--faults", "partition-leader,pause-leader"]
run_timeout_seconds = 180.0  # a run takes about 60 s on 2 cores
exit_pass, exit_violation = 0, 1


def run_suite(out: pathlib.Path, *extra: str) -> tuple[int, dict, dict, str]:
    """One run into `out`: (exit status, results.json, run.json, output)."""
    if shutil.which("unshare") is None or shutil.which("iptables") is None:
        pytest.fail("jepsen_lite needs unshare (util-linux) and iptables (apt-get install iptables)")
    command = [sys.executable, "-m", "jepsen_lite", *arguments, "--out", str(out), *extra]
    process = subprocess.Popen(command, cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = process.communicate(timeout=run_timeout_seconds)
    except subprocess.TimeoutExpired:
        process.kill()  # the re-executed unshare: --kill-child takes the namespace, nodes included, with it
        output, _ = process.communicate(timeout=30)
        pytest.fail(f"`{' '.join(command)}` did not finish within {run_timeout_seconds:g}s:\n{output[-4000:]}")
    print(output)
    runs = sorted(path for path in out.iterdir() if path.is_dir())
    assert len(runs) == 1, f"expected one run directory in {out}, found {runs}:\n{output[-4000:]}"
    facts = json.loads((runs[0] / "run.json").read_text())
    assert process.returncode != 3 and "aborted" not in facts, f"the run aborted: {facts.get('aborted')}"
    results = json.loads((runs[0] / "results.json").read_text())
    return process.returncode, results, facts, output


def stale_read_evidence(results: dict) -> dict[str, int]:
    """The findings a leader without a read barrier can cause, by kind; CAS refusals are not among them."""
    found = {f"version.{kind}": results.get("version", {}).get(kind, {}).get("count", 0)
             for kind in ("stale_reads", "lost", "conflicts", "write_order")}
    for key, verdict in results.get("set", {}).get("keys", {}).items():
        for kind in ("lost", "stale", "flicker"):
            found[f"set.{key}.{kind}"] = verdict[kind]["count"]
    found["session.violations"] = results.get("session", {}).get("violations", {}).get("count", 0)
    return {kind: count for kind, count in found.items() if count}


def test_the_suite_catches_a_leader_that_skips_its_read_barrier(tmp_path):
    status, results, facts, output = run_suite(tmp_path, "--unsafe-stale-reads")
    assert status == exit_violation and results["valid"] is False, f"the mutant passed:\n{output[-3000:]}"
    assert stale_read_evidence(results), ("the run failed, but on nothing a skipped read barrier causes: "
                                          f"{json.dumps({k: v for k, v in results.items() if k != 'perf'})[:3000]}")
    assert any(window.get("new_leader") for window in facts["windows"]), "no leader fault moved the leadership"


def test_the_same_schedule_passes_on_the_real_server(tmp_path):
    status, results, facts, output = run_suite(tmp_path)
    assert (status, results["valid"]) == (exit_pass, True), f"the real server failed:\n{output[-3000:]}"
    assert [window["fault"] for window in facts["windows"]] == ["partition-leader", "pause-leader",
                                                                "partition-leader", "pause-leader", "pause-leader"]
    assert all(window.get("new_leader") for window in facts["windows"]), facts["windows"]
