"""`vaultd.devcluster` writes configs that `vaultd.config` accepts, and drives node processes through Vault's
HTTP contract: it retries what a forming cluster answers while it forms, and says clearly what did not happen.

`write_config` is checked by loading what it writes. `DevCluster.request` is checked against a stub HTTP server in
a thread. The process and protocol logic (start, initialise, unseal, wait for the leader and for health, stop,
kill, pause, and `make run`'s bring-up) runs real child processes through the `python=` seam: a fake interpreter
that runs `fake_node` below instead of `vaultd server`. Each fake node serves the contract's health, leader,
init and unseal answers; init goes through a state file shared by the nodes, which each node "receives" only
`replication_delay` seconds after it was written (until then it answers 501 and 400 "Vault is not initialized"),
and the first bootstrap node "wins the election" only `election_delay` seconds after it starts (until then init
answers 503), so the retries are exercised. A fake node of a pkcs11 config takes recovery_shares at init and
unseals itself once it sees the state; it logs its SOFTHSM2_CONF. The real-cluster tests run the same API
against real vaultd nodes. The pkcs11 configs get a real SoftHSM2 token, checked by a real Pkcs11Wrapper.
"""

import http.server
import io
import json
import os
import pathlib
import stat
import subprocess
import sys
import threading
import tomllib

import pytest

from vaultd import config, devcluster
from vaultd.core.pkcs11_seal import Pkcs11Wrapper

fake_node = r'''
import http.server, json, os, pathlib, signal, sys, time, tomllib

arguments = sys.argv[1:]
assert arguments[:3] == ["-m", "vaultd", "server"], arguments
config_path = pathlib.Path(arguments[arguments.index("--config") + 1])
node_id = arguments[arguments.index("--node") + 1]
document = tomllib.loads(config_path.read_text())
nodes = document["node"]
me = next(node for node in nodes if node["id"] == node_id)
leader = next(node for node in nodes if node.get("bootstrap", True))
state_path = config_path.parent / "fake-state.json"
started, shares = time.monotonic(), set()
election_delay, replication_delay = 0.3, 0.5
auto_unseal = document.get("seal", {}).get("type") == "pkcs11"
print(f"fake node {node_id}: SOFTHSM2_CONF={os.environ.get('SOFTHSM2_CONF')}", flush=True)
if os.environ.get("FAKE_NODE_FAIL"):
    print("fake node: refusing to start, as asked", flush=True)
    sys.exit(3)


def sealed(current):
    return current is None or (not auto_unseal and len(shares) < current["threshold"])


def state():
    if not state_path.exists() or time.time() - state_path.stat().st_mtime < replication_delay:
        return None
    return json.loads(state_path.read_text())


def is_leader():
    return me is leader and time.monotonic() - started >= election_delay


class Handler(http.server.BaseHTTPRequestHandler):
    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        current = state()
        if self.path == "/v1/sys/health":
            status = 501 if current is None else 503 if sealed(current) else (200 if is_leader() else 473)
            return self.answer(status, {"initialized": current is not None})
        if self.path == "/v1/sys/seal-status":
            return self.answer(200, {"type": "pkcs11" if auto_unseal else "shamir", "sealed": sealed(current),
                                     "recovery_seal": auto_unseal})
        if self.path == "/v1/sys/leader":
            return self.answer(200, {"ha_enabled": True, "is_self": is_leader(),
                                     "leader_address": "http://" + leader["api_addr"]})
        self.answer(404, {"errors": []})

    def do_PUT(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        current = state()
        if self.path == "/v1/sys/init":
            if state_path.exists():
                return self.answer(400, {"errors": ["Vault is already initialized"]})
            if not is_leader() and not (me is not leader and time.monotonic() - started >= election_delay):
                return self.answer(503, {"errors": ["no leader yet"]})
            kind = "recovery" if auto_unseal else "secret"
            if set(body) != {f"{kind}_shares", f"{kind}_threshold"}:
                return self.answer(400, {"errors": [f"want {kind}_shares and {kind}_threshold, not {sorted(body)}"]})
            keys = [f"{index:02x}" * 16 for index in range(body[f"{kind}_shares"])]
            result = {"keys": keys, "keys_base64": keys, "root_token": "hvs.fake-root"}
            if auto_unseal:
                result = {"keys": [], "keys_base64": [], "recovery_keys": keys, "recovery_keys_base64": keys,
                          "root_token": "hvs.fake-root"}
            state_path.write_text(json.dumps({**result, "threshold": body[f"{kind}_threshold"]}))
            return self.answer(200, result)
        if self.path == "/v1/sys/unseal":
            if current is None:
                return self.answer(400, {"errors": ["Vault is not initialized"]})
            if body["key"] not in current["keys"]:
                return self.answer(400, {"errors": ["invalid key"]})
            shares.add(body["key"])
            return self.answer(200, {"sealed": len(shares) < current["threshold"], "t": current["threshold"]})
        self.answer(404, {"errors": []})

    def log_message(self, *args):
        pass


signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
host, _, port = me["api_addr"].rpartition(":")
server = http.server.ThreadingHTTPServer((host, int(port)), Handler)
print(f"fake node {node_id} listening on {me['api_addr']}", flush=True)
server.serve_forever(poll_interval=0.05)
'''


@pytest.fixture
def fake_python(tmp_path) -> pathlib.Path:
    """An "interpreter" that runs `fake_node` with the arguments DevCluster gives `python`."""
    (tmp_path / "fake_node.py").write_text(fake_node)
    script = tmp_path / "fake-python"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{tmp_path / "fake_node.py"}" "$@"\n')
    script.chmod(0o755)
    return script


# --- write_config -------------------------------------------------------------------------------------------------


def test_write_config_writes_a_config_vaultd_loads_with_a_private_key(tmp_path):
    path = devcluster.write_config(tmp_path / "c", nodes=3, joiners=1, name="bench", request_forwarding="redirect")
    assert path == tmp_path / "c" / "cluster.toml"
    document = tomllib.loads(path.read_text())
    assert document["seal"] == {"type": "shamir"}
    assert document["cluster"] == {"name": "bench", "raft_key_file": "data/raft.key", "request_forwarding": "redirect"}
    loaded = config.load(path)
    assert [node.id for node in loaded.nodes] == ["n1", "n2", "n3", "n4"]
    assert [node.id for node in loaded.bootstrap_nodes] == ["n1", "n2", "n3"]
    assert [node.data_dir for node in loaded.nodes] == [tmp_path / "c" / "data" / f"n{i}" for i in range(1, 5)]
    addresses = [address for node in loaded.nodes for address in (node.api_addr, node.raft_addr)]
    assert len(set(addresses)) == 8 and all(address.startswith("127.0.0.1:") for address in addresses)
    assert stat.S_IMODE(loaded.raft_key_file.stat().st_mode) == 0o600
    assert len(loaded.raft_key_file.read_bytes().strip()) == 44  # 32 bytes in base64


def test_write_config_refuses_what_it_cannot_write(tmp_path):
    devcluster.write_config(tmp_path, nodes=1)
    with pytest.raises(FileExistsError, match="keeps its config and key"):
        devcluster.write_config(tmp_path, nodes=1)
    with pytest.raises(ValueError, match="hosts has 2 entries for 3 nodes"):
        devcluster.write_config(tmp_path / "other", nodes=2, joiners=1, hosts=["127.0.0.1", "127.0.0.1"])
    with pytest.raises(ValueError, match="nodes >= 1"):
        devcluster.write_config(tmp_path / "other", nodes=0)
    with pytest.raises(ValueError, match="seal must be shamir or pkcs11, not 'awskms'"):
        devcluster.write_config(tmp_path / "other", nodes=1, seal="awskms")
    assert not (tmp_path / "other").exists()


def test_write_config_puts_each_node_on_its_host(tmp_path):
    path = devcluster.write_config(tmp_path, nodes=2, joiners=1, hosts=["127.0.0.1", "127.0.0.2", "127.0.0.3"])
    loaded = config.load(path)
    assert [node.api_addr.rpartition(":")[0] for node in loaded.nodes] == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    assert [node.raft_addr.rpartition(":")[0] for node in loaded.nodes] == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    assert devcluster.DevCluster(path).api_url("n2") == f"http://{loaded.nodes[1].api_addr}"


# --- the cluster without processes --------------------------------------------------------------------------------


def test_a_cluster_reads_its_nodes_and_addresses(tmp_path):
    path = devcluster.write_config(tmp_path, nodes=2, joiners=1)
    loaded = config.load(path)
    cluster = devcluster.DevCluster(path)
    assert (cluster.node_ids, cluster.bootstrap_ids) == (("n1", "n2", "n3"), ("n1", "n2"))
    assert cluster.api_url("n3") == f"http://{loaded.nodes[2].api_addr}"
    assert cluster.raft_addr("n1") == loaded.nodes[0].raft_addr
    assert cluster.log_path("n2") == tmp_path / "data" / "logs" / "n2.log"
    assert not cluster.running("n1")
    with pytest.raises(devcluster.DevClusterError, match="no node 'n9'"):
        cluster.api_url("n9")
    with pytest.raises(devcluster.DevClusterError, match="n1 was never started"):
        cluster.pid("n1")
    with pytest.raises(devcluster.DevClusterError, match="no unseal keys"):
        cluster.unseal()


class _Stub(http.server.BaseHTTPRequestHandler):
    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.server.seen.append((self.command, self.path, dict(self.headers), self.rfile.read(length)))
        status, headers = {"/v1/moved": (307, {"Location": "/v1/elsewhere"}), "/v1/broken": (500, {})}.get(
            self.path, (200, {"Content-Type": "application/json"}))
        body = b'{"ok": true}' if status == 200 else b'{"errors": ["no"]}'
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = _answer

    def log_message(self, *args):
        pass


def test_request_is_raw_follows_no_redirect_and_raises_only_without_an_answer(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        path = tmp_path / "cluster.toml"
        path.write_text(f'[cluster]\nraft_key_file = "k"\n[[node]]\nid = "n1"\n'
                        f'api_addr = "127.0.0.1:{server.server_address[1]}"\nraft_addr = "127.0.0.1:1"\n'
                        f'data_dir = "d"\n')
        cluster = devcluster.DevCluster(path)
        moved = cluster.request("n1", "PUT", "/v1/moved", {"a": 1}, token="hvs.t", headers={"X-Extra": "1"})
        assert moved.status == 307 and moved.headers["location"] == "/v1/elsewhere"
        broken = cluster.request("n1", "GET", "broken")
        assert broken.status == 500 and broken.json() == {"errors": ["no"]}
        fine = cluster.request("n1", "POST", "sys/storage/raft/snapshot", b"\x00raw")
        assert fine.status == 200 and fine.json() == {"ok": True}
        (method, path_asked, headers, body), _, (_, raw_path, raw_headers, raw_body) = server.seen
        assert (method, path_asked, json.loads(body)) == ("PUT", "/v1/moved", {"a": 1})
        assert (headers["X-Vault-Token"], headers["X-Extra"], headers["Content-Type"]) == (
            "hvs.t", "1", "application/json")
        assert (raw_path, raw_body, raw_headers["Content-Type"]) == (
            "/v1/sys/storage/raft/snapshot", b"\x00raw", "application/octet-stream")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    with pytest.raises(ConnectionError, match="no answer from n1 to GET"):
        cluster.request("n1", "GET", "sys/health", timeout=2)


# --- processes, through the fake node -----------------------------------------------------------------------------


def test_a_node_that_exits_at_start_is_reported_with_its_log(tmp_path, fake_python):
    path = devcluster.write_config(tmp_path, nodes=1)
    with devcluster.DevCluster(path, python=fake_python, env={"FAKE_NODE_FAIL": "1"}) as cluster:
        with pytest.raises(devcluster.DevClusterError, match=r"n1 exited with status 3") as error:
            cluster.start()
        assert "fake node: refusing to start, as asked" in str(error.value)
        assert not cluster.running("n1") and cluster.exit_status("n1") == 3


def test_the_cluster_forms_initialises_unseals_and_stops(tmp_path, fake_python):
    path = devcluster.write_config(tmp_path, nodes=3, joiners=1)
    with devcluster.DevCluster(path, python=fake_python) as cluster:
        cluster.start()
        assert [cluster.running(node_id) for node_id in cluster.node_ids] == [True, True, True, False]
        result = cluster.initialize(shares=3, threshold=2)
        assert cluster.keys == result["keys"] and cluster.root_token == "hvs.fake-root"
        cluster.unseal()  # the followers answer "not initialized" until the state file "replicates"
        assert cluster.wait_healthy() == "n1" == cluster.wait_for_leader()
        with pytest.raises(devcluster.DevClusterError, match="already running"):
            cluster.start("n1")
        cluster.start("n4")
        cluster.unseal("n4")
        assert cluster.wait_healthy() == "n1"

        cluster.pause("n2")
        with pytest.raises(devcluster.WaitTimeout, match=r"n2 no answer"):
            cluster.wait_healthy(timeout=0.5)
        cluster.resume("n2")
        assert cluster.wait_healthy() == "n1"

        cluster.kill("n3")
        assert not cluster.running("n3") and cluster.exit_status("n3") == -9
        cluster.start("n3")
        with pytest.raises(devcluster.WaitTimeout, match=r"n3 503 sealed"):
            cluster.wait_healthy(timeout=0.3)
        cluster.unseal("n3")
        cluster.pause("n2")
        cluster.stop()  # SIGTERM reaches the paused node too
        assert [cluster.exit_status(node_id) for node_id in cluster.node_ids] == [0, 0, 0, 0]
        assert "fake node n1 listening" in cluster.log_path("n1").read_text()


def test_unseal_with_keys_of_another_cluster_fails_at_once(tmp_path, fake_python):
    path = devcluster.write_config(tmp_path, nodes=1)
    with devcluster.DevCluster(path, python=fake_python) as cluster:
        cluster.start()
        cluster.initialize()
        cluster.set_init_result({"keys": ["ff" * 16], "root_token": "hvs.other"})
        with pytest.raises(devcluster.DevClusterError, match="invalid key"):
            cluster.unseal(timeout=5)


def test_make_run_initialises_once_and_then_unseals_from_init_json(tmp_path, fake_python):
    path = devcluster.write_config(tmp_path, nodes=3)
    out = io.StringIO()
    with devcluster.DevCluster(path, python=fake_python) as cluster:
        devcluster.prepare(cluster, out)
        assert devcluster.bring_up(cluster, out) == "n1"
    init_path = tmp_path / "data" / "init.json"
    assert stat.S_IMODE(init_path.stat().st_mode) == 0o600
    assert len(json.loads(init_path.read_text())["keys"]) == devcluster.init_shares
    text = out.getvalue()
    assert "initialised now with 5 unseal key shares, threshold 3" in text
    assert "for this local cluster only, until the PKCS#11 auto-unseal issue lands" in text
    assert f"export VAULT_ADDR='{cluster.api_url('n1')}'" in text and "export VAULT_TOKEN='hvs.fake-root'" in text
    roles = {line.split()[0]: line.split()[-1] for line in text.splitlines() if line.startswith("n")}
    assert roles == {"n1": "active", "n2": "standby", "n3": "standby"}

    out = io.StringIO()
    with devcluster.DevCluster(path, python=fake_python) as cluster:
        assert devcluster.bring_up(cluster, out) == "n1"
    assert f"unsealed with the keys in {init_path}" in out.getvalue()


def test_make_run_refuses_an_unknown_seal_and_makes_a_missing_key(tmp_path):
    path = devcluster.write_config(tmp_path, nodes=1)
    (tmp_path / "data" / "raft.key").unlink()
    out = io.StringIO()
    devcluster.prepare(devcluster.DevCluster(path), out)
    assert stat.S_IMODE((tmp_path / "data" / "raft.key").stat().st_mode) == 0o600
    assert "Wrote a new cluster key" in out.getvalue()
    path.write_text(path.read_text().replace('type = "shamir"', 'type = "awskms"'))
    assert devcluster.run_until_stopped(path, out) == 2
    assert os.listdir(tmp_path / "data") == ["raft.key"]


# --- the pkcs11 seal: a SoftHSM2 token of the cluster's own -------------------------------------------------------


@pytest.fixture
def system_token_store():
    """Fails the test if it touched the system's SoftHSM2 token store."""
    root = pathlib.Path("/var/lib/softhsm")

    def listing():
        return sorted((str(path), path.stat().st_mtime_ns) for path in root.rglob("*")) if root.exists() else []

    before = listing()
    yield
    assert listing() == before


def softhsm_seal(pin: str) -> str:
    return "\n".join(['type = "pkcs11"', f"lib = {json.dumps(devcluster.softhsm_lib)}", 'token_label = "vaultd"', pin,
                      'key_label = "vaultd-unseal"', "generate_key = true"])


def test_write_config_with_a_pkcs11_seal_makes_a_token_of_its_own(tmp_path, monkeypatch, system_token_store):
    directory = tmp_path.resolve() / "c"
    path = devcluster.write_config(directory, nodes=3, seal="pkcs11")
    assert tomllib.loads(path.read_text())["seal"] == {
        "type": "pkcs11", "lib": "/usr/lib/softhsm/libsofthsm2.so", "token_label": "vaultd",
        "pin_file": "data/hsm.pin", "key_label": "vaultd-unseal", "mechanism": "CKM_AES_GCM", "generate_key": True}
    loaded = config.load(path)
    pin_file, conf, token_dir = (directory / "data" / name for name in ("hsm.pin", "softhsm2.conf", "softhsm"))
    assert (loaded.seal.pin_file, loaded.seal.pin_env, loaded.seal.generate_key) == (pin_file, "", True)
    assert stat.S_IMODE(pin_file.stat().st_mode) == 0o600 and len(pin_file.read_text().strip()) == 32
    assert stat.S_IMODE(token_dir.stat().st_mode) == 0o700 and len(list(token_dir.iterdir())) == 1
    assert f"directories.tokendir = {token_dir}\n" in conf.read_text()
    assert devcluster.DevCluster(path).env == {"SOFTHSM2_CONF": str(conf)}
    assert devcluster.DevCluster(path, env={"SOFTHSM2_CONF": "/elsewhere"}).env == {"SOFTHSM2_CONF": "/elsewhere"}
    listing = subprocess.run(["softhsm2-util", "--show-slots"], env={**os.environ, "SOFTHSM2_CONF": str(conf)},
                             capture_output=True, text=True, timeout=30, check=True).stdout
    assert listing.count("Label:            vaultd ") == 1
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    with Pkcs11Wrapper(loaded.seal, environ={}) as wrapper:  # the pin file opens the token, and the key is made
        assert wrapper.decrypt(wrapper.encrypt(b"root key", b"aad"), b"aad") == b"root key"
    with pytest.raises(devcluster.DevClusterError, match="softhsm2.conf exists"):
        devcluster.make_softhsm_token(directory)
    assert devcluster.DevCluster(devcluster.write_config(tmp_path / "s", nodes=1)).env == {}


def test_make_run_with_a_pkcs11_seal_makes_the_token_and_the_nodes_unseal_themselves(tmp_path, fake_python,
                                                                                      system_token_store):
    path = devcluster.write_config(tmp_path, nodes=3)
    path.write_text(path.read_text().replace('type = "shamir"', softhsm_seal('pin_file = "data/hsm.pin"')))
    out = io.StringIO()
    with devcluster.DevCluster(path, python=fake_python) as cluster:
        devcluster.prepare(cluster, out)
        assert f"Made the SoftHSM2 token 'vaultd' in {tmp_path / 'data' / 'softhsm'}" in out.getvalue()
        assert stat.S_IMODE((tmp_path / "data" / "hsm.pin").stat().st_mode) == 0o600
        assert devcluster.bring_up(cluster, out) == "n1"
        assert (cluster.keys, len(cluster.recovery_keys), cluster.root_token) == ([], 5, "hvs.fake-root")
        assert f"SOFTHSM2_CONF={cluster.softhsm_conf}" in cluster.log_path("n2").read_text()
    init = json.loads((tmp_path / "data" / "init.json").read_text())
    assert (init["keys"], len(init["recovery_keys"])) == ([], devcluster.init_shares)
    text = out.getvalue()
    assert "3 nodes up, initialised now with 5 recovery key shares, threshold 3; auto-unsealed through PKCS#11" in text
    assert "Recovery keys and root token:" in text and "Keeping unseal keys on disk" not in text

    out = io.StringIO()
    with devcluster.DevCluster(path, python=fake_python) as cluster:
        devcluster.prepare(cluster, out)  # the token is there: nothing is made
        assert devcluster.bring_up(cluster, out) == "n1"
        assert cluster.recovery_keys == init["recovery_keys"]
    assert "Made the SoftHSM2 token" not in out.getvalue() and "3 nodes up, auto-unsealed through PKCS#11." in \
        out.getvalue()


def test_make_run_makes_a_token_for_the_pin_of_pin_env(tmp_path, monkeypatch, system_token_store):
    path = devcluster.write_config(tmp_path, nodes=1)
    path.write_text(path.read_text().replace('type = "shamir"', softhsm_seal('pin_env = "VAULTD_TEST_HSM_PIN"')))
    monkeypatch.delenv("VAULTD_TEST_HSM_PIN", raising=False)
    with pytest.raises(devcluster.DevClusterError, match="pin_env = 'VAULTD_TEST_HSM_PIN' is not set"):
        devcluster.prepare(devcluster.DevCluster(path), io.StringIO())
    assert not (tmp_path / "data" / "softhsm").exists() and not (tmp_path / "data" / "softhsm2.conf").exists()
    monkeypatch.setenv("VAULTD_TEST_HSM_PIN", "4321")
    devcluster.prepare(devcluster.DevCluster(path), io.StringIO())
    monkeypatch.setenv("SOFTHSM2_CONF", str(tmp_path / "data" / "softhsm2.conf"))
    with Pkcs11Wrapper(config.load(path).seal) as wrapper:
        wrapper.check()
