"""The worker client against a stub HTTP server: each way a request can end, and what it becomes in the history.

A write is :fail only when nothing can have happened (a 4xx such as a CAS mismatch, 412 or 403, or a connection
that could not be opened); a 5xx or a lost answer after sending is :info. A read that did not answer 200 is
:fail whatever the reason. The stub answers by path; it records the client port of every request, so the test
can see that the keep-alive connection is reused, and re-opened (not turned into an :info) when the server
closed it while idle.
"""

import http.server
import json
import socket
import threading
import time

import pytest

from jepsen_lite.client import Answer, Client, Indeterminate, NotSent, classify_read, classify_write, perform

slow_seconds = 1.0
client_timeout_seconds = 0.3
assert client_timeout_seconds < slow_seconds

ANSWERS = {
    "/ok": (200, {"data": {"version": 3}}),
    "/cas": (400, {"errors": ["check-and-set parameter did not match the current version"]}),
    "/invalid": (400, {"errors": ["bad request"]}),
    "/precondition": (412, {"errors": ["index not yet applied"]}),
    "/forbidden": (403, {"errors": ["permission denied"]}),
    "/missing": (404, {"errors": []}),
    "/no-route": (404, {"errors": ["no handler for route"]}),
    "/busy": (429, {"errors": ["proposal queue full"]}),
    "/boom": (500, {"errors": ["raft: proposal timeout"]}),
    "/sealed": (503, {"errors": ["Vault is sealed"]}),
}


class Stub(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    ports: list[int] = []

    def do_GET(self):
        self._answer()

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer()

    def _answer(self):
        Stub.ports.append(self.client_address[1])
        if self.path == "/slow":
            time.sleep(slow_seconds)
        if self.path == "/hangup":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        status, body = ANSWERS.get(self.path, (200, {}))
        payload = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            if self.path == "/ok":
                self.send_header("X-Vault-Index", "42")
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # /slow: the client gave up first
            self.close_connection = True
            return
        if self.path == "/close-after":
            self.close_connection = True  # closes without saying so: the client must notice before reusing it

    def log_message(self, *arguments):
        pass


@pytest.fixture
def server():
    stub = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    stub.daemon_threads = True
    thread = threading.Thread(target=stub.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    Stub.ports = []
    yield stub
    stub.shutdown()
    stub.server_close()


@pytest.fixture
def client(server):
    connection = Client("127.0.0.1", server.server_address[1], "token", timeout_seconds=client_timeout_seconds)
    yield connection
    connection.close()


def write(client, path):
    return classify_write(perform(client, "POST", path, {"data": {"v": "x"}}))


def read(client, path, absent_ok=False):
    return classify_read(perform(client, "GET", path), absent_ok=absent_ok)


def test_an_answered_write_is_ok_with_its_index_token(client):
    outcome = write(client, "/ok")
    assert (outcome.type, outcome.error, outcome.http_status) == ("ok", None, 200)
    assert outcome.answer.index_token == "42" and outcome.answer.body == {"data": {"version": 3}}


@pytest.mark.parametrize(("path", "error"), [
    ("/cas", "cas-mismatch"), ("/invalid", "http-400"), ("/precondition", "http-412"), ("/forbidden", "http-403"),
    ("/busy", "http-429"),
])
def test_a_refused_write_definitely_did_not_happen(client, path, error):
    assert (write(client, path).type, write(client, path).error) == ("fail", error)


@pytest.mark.parametrize(("path", "error"), [("/boom", "http-500"), ("/sealed", "http-503")])
def test_a_write_answered_5xx_may_have_happened(client, path, error):
    outcome = write(client, path)
    assert (outcome.type, outcome.error) == ("info", error)


def test_a_write_without_an_answer_in_time_may_have_happened(client):
    started = time.monotonic()
    outcome = write(client, "/slow")
    assert (outcome.type, outcome.error) == ("info", "timeout")
    assert time.monotonic() - started < slow_seconds


def test_a_write_whose_connection_dropped_after_sending_may_have_happened(client):
    assert (write(client, "/hangup").type, write(client, "/hangup").error) == ("info", "disconnected")


def test_a_write_that_could_not_connect_did_not_happen():
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    closed = Client("127.0.0.1", port, timeout_seconds=client_timeout_seconds)
    result = perform(closed, "POST", "/ok", {})
    assert isinstance(result, NotSent)
    assert (classify_write(result).type, classify_write(result).error) == ("fail", "not-sent")


def test_every_read_that_did_not_answer_200_failed(client):
    assert read(client, "/ok").type == "ok"
    for path in ("/boom", "/sealed", "/precondition", "/slow", "/hangup", "/missing"):
        assert read(client, path).type == "fail", path
    assert read(client, "/slow").error == "timeout"


def test_a_read_of_an_absent_key_is_ok_but_a_missing_route_is_not(client):
    assert read(client, "/missing", absent_ok=True).type == "ok"
    assert read(client, "/no-route", absent_ok=True).type == "fail"


def test_the_connection_is_kept_alive_and_reopened_when_the_server_closed_it(client):
    for _ in range(3):
        assert isinstance(client.request("GET", "/ok"), Answer)
    assert len(set(Stub.ports)) == 1
    assert client.request("GET", "/close-after").status == 200
    time.sleep(0.1)  # the server's FIN arrives
    answer = client.request("POST", "/ok", {"data": {}})  # reconnects first: not an Indeterminate
    assert answer.status == 200 and len(set(Stub.ports)) == 2


def test_lost_answers_raise_indeterminate_and_the_next_request_reconnects(client):
    with pytest.raises(Indeterminate) as raised:
        client.request("GET", "/slow")
    assert raised.value.kind == "timeout"
    assert client.request("GET", "/ok").status == 200
