"""A leader cut off from the majority by iptables, observed from outside the cut: run inside a private network
namespace by test_faults.py, as

    unshare -rn --pid --fork --kill-child -- python tests/cluster/partition_scenario.py DIRECTORY

It brings up a 3-node cluster on 127.0.0.2-4 (KV v2 at secret/), writes k = "old" on the leader, drops every
packet between the leader and both followers in both directions (OUTPUT rules on source and destination), proves
the cut with bound-source TCP probes, waits for the majority to elect a new leader, writes k = "new" there, then
reads k on the old leader from 127.0.0.1 (the harness address, not cut): plainly, and with the new write's
X-Vault-Index. Then it heals the cut (`iptables -F OUTPUT`) and watches the old leader step down and serve "new".
One more read of k on the old leader is sent right after the cut, while it may still believe it leads (the read
barrier path); it is concurrent with the write of "new", so either value is legal there: information only.

It judges nothing: it prints one JSON object with every observation (statuses, values, seconds) and exits 0, so
that the test asserts on what happened. It exits 2, with the JSON's "aborted" saying why, when the scenario could
not be set up as described (a cut that leaks, no new leader, a write refused): then nothing was tested. Every
node is stopped by PID in a finally block; the PID namespace (`--pid --fork --kill-child`) also kills them if
this process itself is killed. The node logs stay in DIRECTORY/logs.
"""

import concurrent.futures
import http.client
import json
import pathlib
import signal
import socket
import subprocess
import sys
import time

repo_root = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(repo_root))

from raft.backend import proposal_timeout_seconds  # noqa: E402  (the repo root goes on sys.path first)
from tests.cluster.conftest import start_cluster  # noqa: E402

hosts = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
harness_host = "127.0.0.1"  # the test's own requests leave from here; no rule names it
probe_timeout_seconds = 1.0  # a bound-source connect across the cut; DROP makes it time out
election_wait_seconds_max = 30.0  # the majority side must elect a leader by then
partitioned_read_timeout_seconds = 10.0  # over the read barrier's proposal timeout: its 500 can arrive
partitioned_reads = 3
request_timeout_seconds = 10.0
heal_wait_seconds_max = 30.0  # the old leader must step down and answer as a standby by then
poll_interval_seconds = 0.05
key_path = "/v1/secret/data/k"
assert probe_timeout_seconds < election_wait_seconds_max
assert partitioned_read_timeout_seconds > proposal_timeout_seconds


class Aborted(Exception):
    """The scenario could not be set up as described; nothing was tested."""


def request(url: str, method: str, path: str, token: str = "", body=None, headers=None,
            timeout: float = request_timeout_seconds) -> tuple[dict, dict]:
    """One HTTP request from the harness address on a fresh connection, every outcome as data: the observation
    (`outcome` "answered" with `status`, `index` and, for a KV v2 read, `value`; or "timeout"; or "no answer")
    and the JSON object answered ({} for none)."""
    host, _, port = url.removeprefix("http://").rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout, source_address=(harness_host, 0))
    data = None if body is None else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **({"X-Vault-Token": token} if token else {}), **(headers or {})}
    started = time.monotonic()
    try:
        connection.request(method, path, data, sent)
        answer = connection.getresponse()
        payload = answer.read()
    except TimeoutError:
        return {"outcome": "timeout", "seconds": _since(started)}, {}
    except (OSError, http.client.HTTPException) as error:
        return {"outcome": "no answer", "error": f"{type(error).__name__}: {error}", "seconds": _since(started)}, {}
    finally:
        connection.close()
    observed = {"outcome": "answered", "status": answer.status, "seconds": _since(started)}
    if (index := answer.getheader("X-Vault-Index")) is not None:
        observed["index"] = int(index)
    try:
        document = json.loads(payload)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        observed["body"] = payload[:200].decode(errors="replace")
        return observed, {}
    if answer.status == 200 and isinstance(document.get("data"), dict) and "data" in document["data"]:
        observed["value"] = (document["data"]["data"] or {}).get("v")
    if document.get("errors"):
        observed["errors"] = document["errors"]
    return observed, document


def call(url: str, method: str, path: str, token: str = "", body=None, headers=None,
         timeout: float = request_timeout_seconds) -> dict:
    return request(url, method, path, token, body, headers, timeout)[0]


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)


def require(condition: bool, why: str) -> None:
    if not condition:
        raise Aborted(why)


# --- the cut -----------------------------------------------------------------------------------------------------


def ip_of(running, node: str) -> str:
    return running.url(node).removeprefix("http://").rpartition(":")[0]


def port_of(running, node: str) -> int:
    return int(running.url(node).rpartition(":")[2])


def iptables(*arguments: str) -> str:
    command = ["iptables", "-w", *arguments]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=30)
    return " ".join(command)


def cut(running, leader: str, followers: list[str]) -> list[str]:
    """Drop every packet between the leader and each follower, both ways; the rules as run."""
    rules = []
    for follower in followers:
        for source, destination in ((leader, follower), (follower, leader)):
            rules.append(iptables("-A", "OUTPUT", "-s", ip_of(running, source), "-d", ip_of(running, destination),
                                  "-j", "DROP"))
    return rules


def connects(source: str, destination: str, port: int) -> bool:
    """Whether a TCP connection leaving from `source` reaches `destination:port` within the probe timeout."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(probe_timeout_seconds)
        probe.bind((source, 0))
        try:
            probe.connect((destination, port))
            return True
        except OSError:
            return False


def probe_links(running, leader: str, followers: list[str]) -> dict[str, bool]:
    """Leader <-> each follower, both ways, to the API ports: whether each bound-source connection went through.
    The probes run at once, so that a cut costs one probe timeout, not four."""
    links = [(source, destination) for follower in followers for source, destination in ((leader, follower),
                                                                                          (follower, leader))]
    with concurrent.futures.ThreadPoolExecutor(len(links)) as pool:
        went_through = pool.map(lambda link: connects(ip_of(running, link[0]), ip_of(running, link[1]),
                                                      port_of(running, link[1])), links)
        return {f"{source}->{destination}": through for (source, destination), through in zip(links, went_through,
                                                                                               strict=True)}


# --- waits -------------------------------------------------------------------------------------------------------


def health(running, node: str) -> int | None:
    return call(running.url(node), "GET", "/v1/sys/health", timeout=2.0).get("status")


def wait_new_leader(running, followers: list[str]) -> str:
    """A follower whose health is 200 and whose sys/leader says is_self: the majority side's leader."""
    deadline = time.monotonic() + election_wait_seconds_max
    while time.monotonic() < deadline:
        for follower in followers:
            if health(running, follower) == 200:
                _, status = request(running.url(follower), "GET", "/v1/sys/leader", timeout=2.0)
                if status.get("is_self") is True:
                    return follower
        time.sleep(poll_interval_seconds)
    raise Aborted(f"no follower became active within {election_wait_seconds_max:g}s of the cut")


def wait_stepped_down(running, node: str) -> dict:
    """Poll until `node` answers health 473 and sys/leader names another node as leader (bounded); what it last
    answered. After the heal, the leader may be either majority node: the old leader's higher candidate term can
    force one more election, which its shorter log cannot win."""
    started = time.monotonic()
    while True:
        status = health(running, node)
        _, leader = request(running.url(node), "GET", "/v1/sys/leader", timeout=2.0)
        observed = {"health": status, "is_self": leader.get("is_self"), "leader_address": leader.get("leader_address"),
                    "seconds": _since(started)}
        if status == 473 and leader.get("is_self") is False and leader.get("leader_address") not in (
                None, "", running.url(node)):
            return observed
        if time.monotonic() - started >= heal_wait_seconds_max:
            return observed
        time.sleep(poll_interval_seconds)


# --- the scenario ------------------------------------------------------------------------------------------------


def partition(running, observed: dict) -> tuple[str, str, int]:
    """Write "old", cut the leader off, wait for the majority's leader, write "new" there; (old leader, new
    leader, the new write's index)."""
    leader = running.leader
    followers = [node for node in running.devcluster.node_ids if node != leader]
    observed["nodes"] = {node: running.url(node) for node in running.devcluster.node_ids}
    observed["old_leader"] = leader
    observed["old_write"] = call(running.url(leader), "POST", key_path, running.token, {"data": {"v": "old"}})
    require(observed["old_write"].get("status") == 200, "the old leader did not acknowledge k = old")
    observed["links_before_cut"] = probe_links(running, leader, followers)
    require(all(observed["links_before_cut"].values()), "a bound-source probe failed before any cut")
    observed["rules"] = cut(running, leader, followers)
    cut_at = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        # Sent while the old leader may still believe it leads, so it takes the read barrier path. It is concurrent
        # with the write of "new" (invoked before it), so either value would be linearizable: information only.
        early_read = pool.submit(call, running.url(leader), "GET", key_path, running.token,
                                 timeout=partitioned_read_timeout_seconds)
        observed["old_leader_health_after_cut"] = health(running, leader)
        require(observed["old_leader_health_after_cut"] is not None, "the harness cannot reach the old leader")
        observed["links_after_cut"] = probe_links(running, leader, followers)
        require(not any(observed["links_after_cut"].values()), "the cut leaks: a bound-source probe went through")
        new_leader = wait_new_leader(running, followers)
        observed["new_leader"] = new_leader
        observed["election_seconds"] = _since(cut_at)  # until the harness saw it: an upper bound
        observed["new_write"] = call(running.url(new_leader), "POST", key_path, running.token,
                                     {"data": {"v": "new"}})
        require(observed["new_write"].get("status") == 200 and "index" in observed["new_write"],
                "the new leader did not acknowledge k = new with an X-Vault-Index")
        observed["read_during_the_cut_concurrent_with_new"] = early_read.result()
    return leader, new_leader, observed["new_write"]["index"]


def read_across_the_cut(running, old_leader: str, new_index: int, observed: dict) -> None:
    """Reads of k on the old leader, after k = new was acknowledged, each with the old leader's health first."""
    observed["partitioned_reads"] = []
    for _ in range(partitioned_reads):
        status = health(running, old_leader)
        read = call(running.url(old_leader), "GET", key_path, running.token, timeout=partitioned_read_timeout_seconds)
        observed["partitioned_reads"].append({"old_leader_health": status, **read})
    status = health(running, old_leader)
    read = call(running.url(old_leader), "GET", key_path, running.token, headers={"X-Vault-Index": str(new_index)},
                timeout=partitioned_read_timeout_seconds)
    observed["partitioned_index_read"] = {"old_leader_health": status, **read}


def heal(running, old_leader: str, new_index: int, observed: dict) -> None:
    followers = [node for node in running.devcluster.node_ids if node != old_leader]
    observed["heal_rule"] = iptables("-F", "OUTPUT")
    observed["links_after_heal"] = probe_links(running, old_leader, followers)
    observed["old_leader_after_heal"] = wait_stepped_down(running, old_leader)
    observed["healed_index_read"] = call(running.url(old_leader), "GET", key_path, running.token,
                                         headers={"X-Vault-Index": str(new_index)})


def main(directory: pathlib.Path) -> int:
    signal.signal(signal.SIGTERM, _exit_on_terminate)  # as pid 1 of the namespace, no handler means no effect
    observed: dict = {"hosts": list(hosts)}
    running = None
    try:
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True, capture_output=True, timeout=30)
        running = start_cluster(directory, hosts=hosts)
        old_leader, _, new_index = partition(running, observed)
        read_across_the_cut(running, old_leader, new_index, observed)
        heal(running, old_leader, new_index, observed)
    except Aborted as error:
        observed["aborted"] = str(error)
    finally:
        if running is not None:
            running.devcluster.close()
        print(json.dumps(observed), flush=True)
    return 2 if "aborted" in observed else 0


def _exit_on_terminate(signal_number, frame):
    raise SystemExit(128 + signal_number)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} DIRECTORY (inside `unshare -rn`)")
    sys.exit(main(pathlib.Path(sys.argv[1])))
