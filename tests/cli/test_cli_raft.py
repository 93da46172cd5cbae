"""`vaultd operator raft ...` and `vaultd operator step-down` send what Vault's CLI sends and print what it prints.

Each test runs `vaultd.cli.main` in-process against a stub HTTP server on 127.0.0.1 (a thread) that answers by
method and path and records every request; it asserts the request on the wire (method, path, token, body and
Content-Type), the one redirect followed with the body re-sent, the output (Vault's tables and messages, or JSON
with -format=json), the exit status, and for `snapshot save` the file's bytes and mode. These are unit tests of
the CLI layer; the real cluster's tests drive the same commands against real nodes.
"""

import http.server
import io
import json
import os
import stat
import threading

import pytest

from vaultd import cli

configuration = {
    "request_id": "r1", "lease_id": "", "renewable": False, "lease_duration": 0, "warnings": None,
    "data": {"config": {"index": 7, "servers": [
        {"node_id": "n1", "address": "127.0.0.1:8301", "leader": True, "voter": True, "protocol_version": "3"},
        {"node_id": "n2", "address": "127.0.0.1:8302", "leader": False, "voter": True, "protocol_version": "3"},
        {"node_id": "n3", "address": "127.0.0.1:8303", "leader": False, "voter": False, "protocol_version": "3"},
    ]}},
}
autopilot = {"data": {
    "healthy": True, "failure_tolerance": 1, "leader": "n1", "voters": ["n1", "n2", "n3"],
    "servers": {
        "n2": {"id": "n2", "name": "n2", "address": "127.0.0.1:8302", "node_status": "alive", "last_contact":
               "12ms", "last_term": 3, "last_index": 41, "healthy": True, "status": "voter", "version": "0.1.0"},
        "n1": {"id": "n1", "name": "n1", "address": "127.0.0.1:8301", "node_status": "alive", "last_contact": "0s",
               "last_term": 3, "last_index": 42, "healthy": True, "status": "leader"},
    },
}}


class _Stub(http.server.BaseHTTPRequestHandler):
    """Answers from the server's `answers[(method, path)]` and records (method, path, headers, body)."""

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.server.seen.append((self.command, self.path, dict(self.headers), self.rfile.read(length)))
        status, headers, body = self.server.answers.get((self.command, self.path), (404, {}, b'{"errors": []}'))
        if isinstance(body, dict):
            body = json.dumps(body).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value.replace("ADDRESS", self.server.address))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def stub():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    server.seen, server.answers = [], {}
    server.address = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def run(stub, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    environ = {"VAULT_ADDR": stub.address, "VAULT_TOKEN": "hvs.root", "HOME": os.devnull}
    code = cli.main(list(args), environ=environ, stdin=io.StringIO(), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_list_peers_prints_vaults_table_and_the_raw_response_as_json(stub):
    stub.answers[("GET", "/v1/sys/storage/raft/configuration")] = (200, {}, configuration)
    code, out, _ = run(stub, "operator", "raft", "list-peers")
    assert code == 0
    assert out.splitlines() == [
        "Node    Address           State       Voter",
        "----    -------           -----       -----",
        "n1      127.0.0.1:8301    leader      true",
        "n2      127.0.0.1:8302    follower    true",
        "n3      127.0.0.1:8303    follower    false",
    ]
    assert stub.seen[0][2]["X-Vault-Token"] == "hvs.root"
    code, out, _ = run(stub, "operator", "raft", "list-peers", "-format=json")
    assert code == 0 and json.loads(out) == configuration


def test_list_peers_without_a_configuration_and_refusals(stub):
    code, _, err = run(stub, "operator", "raft", "list-peers")
    assert (code, err.strip()) == (2, "No raft cluster configuration found")
    stub.answers[("GET", "/v1/sys/storage/raft/configuration")] = (403, {}, {"errors": ["permission denied"]})
    code, _, err = run(stub, "operator", "raft", "list-peers")
    assert code == 1
    assert err.startswith("Error reading the raft cluster configuration: permission denied (HTTP 403 on GET ")


def test_join_posts_the_leader_address_to_the_new_node(stub):
    stub.answers[("POST", "/v1/sys/storage/raft/join")] = (200, {}, {"joined": True})
    code, out, _ = run(stub, "operator", "raft", "join", "http://127.0.0.1:8201")
    assert code == 0 and out.splitlines() == ["Key       Value", "---       -----", "Joined    true"]
    method, path, headers, body = stub.seen[0]
    assert (method, path, json.loads(body)) == ("POST", "/v1/sys/storage/raft/join",
                                               {"leader_api_addr": "http://127.0.0.1:8201"})
    assert headers["Content-Type"] == "application/json"
    code, out, _ = run(stub, "operator", "raft", "join", "-non-voter", "-format=json", "http://127.0.0.1:8201")
    assert code == 0 and json.loads(out) == {"joined": True}
    assert json.loads(stub.seen[1][3]) == {"leader_api_addr": "http://127.0.0.1:8201", "non_voter": True}


def test_join_reports_the_servers_refusal(stub):
    stub.answers[("POST", "/v1/sys/storage/raft/join")] = (
        500, {}, {"errors": ["1 error occurred:\n\t* failed to join raft cluster: no leader\n\n"]})
    code, _, err = run(stub, "operator", "raft", "join", "http://127.0.0.1:8201")
    assert code == 1
    assert err.startswith("Error joining the node to the Raft cluster: failed to join raft cluster: no leader "
                          "(HTTP 500")


def test_remove_peer_posts_the_server_id(stub):
    stub.answers[("POST", "/v1/sys/storage/raft/remove-peer")] = (204, {}, b"")
    code, out, _ = run(stub, "operator", "raft", "remove-peer", "n3")
    assert (code, out) == (0, "Peer removed successfully!\n")
    method, path, headers, body = stub.seen[0]
    assert (method, path, json.loads(body), headers["X-Vault-Token"]) == (
        "POST", "/v1/sys/storage/raft/remove-peer", {"server_id": "n3"}, "hvs.root")


def test_snapshot_save_follows_one_redirect_and_writes_the_bytes_with_mode_0600(stub, tmp_path):
    snapshot = bytes(range(256)) * 64
    stub.answers[("GET", "/v1/sys/storage/raft/snapshot")] = (307, {"Location": "ADDRESS/v1/leader/snapshot"}, b"")
    stub.answers[("GET", "/v1/leader/snapshot")] = (200, {"Content-Type": "application/octet-stream"}, snapshot)
    target = tmp_path / "raft.snap"
    code, out, err = run(stub, "operator", "raft", "snapshot", "save", str(target))
    assert (code, out, err) == (0, "", "")
    assert target.read_bytes() == snapshot
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [(method, path) for method, path, _, _ in stub.seen] == [
        ("GET", "/v1/sys/storage/raft/snapshot"), ("GET", "/v1/leader/snapshot")]
    assert stub.seen[1][2]["X-Vault-Token"] == "hvs.root"


def test_snapshot_save_writes_nothing_when_the_server_refuses(stub, tmp_path):
    stub.answers[("GET", "/v1/sys/storage/raft/snapshot")] = (503, {}, {"errors": ["Vault is sealed"]})
    target = tmp_path / "raft.snap"
    code, _, err = run(stub, "operator", "raft", "snapshot", "save", str(target))
    assert code == 1 and err.startswith("Error taking the snapshot: Vault is sealed (HTTP 503")
    assert list(tmp_path.iterdir()) == []


def test_snapshot_save_does_not_follow_a_second_redirect(stub, tmp_path):
    stub.answers[("GET", "/v1/sys/storage/raft/snapshot")] = (307, {"Location": "ADDRESS/v1/a"}, b"")
    stub.answers[("GET", "/v1/a")] = (307, {"Location": "ADDRESS/v1/b"}, b"")
    code, _, err = run(stub, "operator", "raft", "snapshot", "save", str(tmp_path / "raft.snap"))
    assert code == 1 and "(HTTP 307 on GET" in err and len(stub.seen) == 2
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("flags", "path"), [((), "/v1/sys/storage/raft/snapshot"),
                                             (("-force",), "/v1/sys/storage/raft/snapshot-force")])
def test_snapshot_restore_posts_the_raw_bytes_and_resends_them_after_a_redirect(stub, tmp_path, flags, path):
    snapshot = b"\x00VAULTD-SNAPSHOT\xff" * 100
    source = tmp_path / "raft.snap"
    source.write_bytes(snapshot)
    stub.answers[("POST", path)] = (307, {"Location": "ADDRESS/v1/leader" + path}, b"")
    stub.answers[("POST", "/v1/leader" + path)] = (204, {}, b"")
    code, out, err = run(stub, "operator", "raft", "snapshot", "restore", *flags, str(source))
    assert (code, out, err) == (0, "", "")
    (first_method, first_path, first_headers, first_body), (method, followed, headers, body) = stub.seen
    assert (first_method, first_path, first_body) == ("POST", path, snapshot)
    assert (method, followed, body) == ("POST", "/v1/leader" + path, snapshot)
    assert headers["Content-Type"] == first_headers["Content-Type"] == "application/octet-stream"


def test_snapshot_restore_of_a_missing_or_empty_file_sends_nothing(stub, tmp_path):
    code, _, err = run(stub, "operator", "raft", "snapshot", "restore", str(tmp_path / "absent.snap"))
    assert code == 1 and err.startswith("Error opening the snapshot file ")
    (tmp_path / "empty.snap").write_bytes(b"")
    code, _, err = run(stub, "operator", "raft", "snapshot", "restore", str(tmp_path / "empty.snap"))
    assert code == 1 and "is empty" in err
    assert stub.seen == []


def test_autopilot_state_prints_vaults_pretty_format_and_json(stub):
    stub.answers[("GET", "/v1/sys/storage/raft/autopilot/state")] = (200, {}, autopilot)
    code, out, _ = run(stub, "operator", "raft", "autopilot", "state")
    assert code == 0
    assert out.splitlines() == [
        "Healthy:                         true",
        "Failure Tolerance:               1",
        "Leader:                          n1",
        "Voters:",
        "   n1",
        "   n2",
        "   n3",
        "Servers:",
        "   n1",
        "      Name:              n1",
        "      Address:           127.0.0.1:8301",
        "      Status:            leader",
        "      Node Status:       alive",
        "      Healthy:           true",
        "      Last Contact:      0s",
        "      Last Term:         3",
        "      Last Index:        42",
        "      Version:",
        "   n2",
        "      Name:              n2",
        "      Address:           127.0.0.1:8302",
        "      Status:            voter",
        "      Node Status:       alive",
        "      Healthy:           true",
        "      Last Contact:      12ms",
        "      Last Term:         3",
        "      Last Index:        41",
        "      Version:           0.1.0",
    ]
    code, out, _ = run(stub, "operator", "raft", "autopilot", "state", "-format=json")
    assert code == 0 and json.loads(out) == autopilot["data"]


def test_step_down_names_the_address_it_asked(stub):
    stub.answers[("PUT", "/v1/sys/step-down")] = (204, {}, b"")
    code, out, _ = run(stub, "operator", "step-down")
    assert (code, out) == (0, f"Success! Stepped down: {stub.address}\n")
    assert stub.seen[0][:2] == ("PUT", "/v1/sys/step-down")


@pytest.mark.parametrize(("args", "message"), [
    (("operator", "raft", "join"), "Not enough arguments (expected 1, got 0)"),
    (("operator", "raft", "remove-peer", "n1", "n2"), "Too many arguments (expected 1, got 2)"),
    (("operator", "raft", "snapshot", "save"), "Not enough arguments (expected 1, got 0)"),
    (("operator", "raft", "snapshot", "restore", "-forced", "x"), "flag provided but not defined: -forced"),
    (("operator", "raft", "list-peers", "extra"), "Too many arguments (expected 0, got 1)"),
    (("operator", "step-down", "-format=yaml"), "Invalid output format 'yaml': want one of table, json"),
])
def test_usage_errors_exit_2_before_sending_anything(stub, args, message):
    code, out, err = run(stub, *args)
    assert (code, out) == (2, "") and err.splitlines()[0] == f"Error: {message}"
    assert stub.seen == []


def test_the_raft_group_lists_its_commands(stub):
    code, out, _ = run(stub, "operator", "raft")
    assert code == 2 and out.startswith("Usage: vaultd operator raft <subcommand>")
    assert [line.split()[2] for line in out.splitlines()[2:]] == [
        "list-peers", "join", "remove-peer", "snapshot", "snapshot", "autopilot"]
    code, out, _ = run(stub, "operator", "raft", "snapshot", "-help")
    assert code == 0 and "operator raft snapshot save" in out and "operator raft snapshot restore" in out
