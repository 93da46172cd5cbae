"""The LeaderWatch against stub nodes: the leader is the node a majority follows, never merely one that claims.

Three stub HTTP servers answer `GET /v1/sys/leader` with whatever the test sets: `is_self`, or the
`leader_address` of another stub, or nothing at all (a paused node: the request times out). A cut-off old leader
that still claims to lead while the two others follow a new one must not count; neither must two claimants
without followers. Each check waits (bounded) for the watch's polls to see the change.
"""

import http.server
import json
import threading
import time

import pytest

from jepsen_lite.watch import LeaderWatch, belief_fresh_seconds, poll_interval_seconds

settle_seconds = 3.0  # a belief change shows within a poll or two, a silenced node within the freshness window
assert belief_fresh_seconds + 4 * poll_interval_seconds < settle_seconds


class LeaderStub(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        answer = self.server.answer
        if answer is None:  # paused: say nothing until the client gives up
            time.sleep(1.0)
            self.close_connection = True
            return
        payload = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *arguments):
        pass


@pytest.fixture
def stubs():
    servers = {}
    for node_id in ("n1", "n2", "n3"):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), LeaderStub)
        server.daemon_threads = True
        server.answer = {"is_self": False, "leader_address": ""}
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        servers[node_id] = server
    watch = LeaderWatch({node_id: ("127.0.0.1", server.server_address[1]) for node_id, server in servers.items()})
    watch.start()
    yield servers, watch
    watch.stop()
    for server in servers.values():
        server.shutdown()
        server.server_close()


def url(server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def lead(servers, leader: str, followers: list[str]) -> None:
    servers[leader].answer = {"is_self": True, "leader_address": url(servers[leader])}
    for follower in followers:
        servers[follower].answer = {"is_self": False, "leader_address": url(servers[leader])}


def settled(watch, expected) -> bool:
    deadline = time.monotonic() + settle_seconds
    while time.monotonic() < deadline:
        if watch.leader() == expected:
            return True
        time.sleep(poll_interval_seconds)
    return False


def test_the_leader_is_the_node_a_majority_follows(stubs):
    servers, watch = stubs
    assert settled(watch, None)
    lead(servers, "n1", ["n2", "n3"])
    assert settled(watch, "n1")


def test_a_cut_off_leader_that_still_claims_is_not_the_leader(stubs):
    servers, watch = stubs
    lead(servers, "n1", ["n2", "n3"])
    assert settled(watch, "n1")
    cut_at = time.monotonic()
    lead(servers, "n3", ["n2"])  # n1 still answers is_self: it has not noticed
    assert settled(watch, "n3")
    elected = watch.first_leader_after(cut_at, "n1")
    assert elected is not None and elected[1] == "n3" and elected[0] >= cut_at


def test_two_claimants_without_followers_make_no_leader(stubs):
    servers, watch = stubs
    servers["n1"].answer = {"is_self": True, "leader_address": url(servers["n1"])}
    servers["n2"].answer = {"is_self": True, "leader_address": url(servers["n2"])}
    servers["n3"].answer = {"is_self": False, "leader_address": ""}
    time.sleep(4 * poll_interval_seconds)
    assert watch.leader() is None


def test_a_silent_leader_stops_counting_once_its_belief_is_stale(stubs):
    servers, watch = stubs
    lead(servers, "n1", ["n2", "n3"])
    assert settled(watch, "n1")
    servers["n1"].answer = None  # paused
    servers["n2"].answer = servers["n3"].answer = {"is_self": False, "leader_address": ""}
    assert settled(watch, None)
    assert watch.changes()[-1][1] is None


def test_a_settled_leader_is_one_the_majority_has_followed_for_a_while(stubs):
    servers, watch = stubs
    lead(servers, "n1", ["n2", "n3"])
    assert settled(watch, "n1")
    lead(servers, "n2", ["n1", "n3"])
    assert settled(watch, "n2")
    assert watch.settled_leader(1.0) is None  # just changed: a leader fault now could hit the old leader
    deadline = time.monotonic() + settle_seconds
    while watch.settled_leader(0.3) is None and time.monotonic() < deadline:
        time.sleep(poll_interval_seconds)
    assert watch.settled_leader(0.3) == "n2"
