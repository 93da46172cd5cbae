"""Real vaultd processes on this machine, for `make run`, the cluster tests and the benchmarks.

`write_config` writes a cluster.toml with free ports and a fresh Raft key; `DevCluster` starts one
`python -m vaultd server --config C --node ID` process per node (cwd: the config's folder; output appended to
`<log_dir>/<id>.log`), initialises and unseals the cluster over Vault's HTTP API, waits for it to be healthy,
and signals, pauses and stops the processes. `python -m vaultd.devcluster run CONFIG` is `make run`.

With `write_config(..., seal="pkcs11")` the cluster auto-unseals through SoftHSM2 (Debian's `softhsm2`): the
config's folder gets `data/softhsm/` (the token directory), `data/softhsm2.conf` (its own SOFTHSM2_CONF, so the
system token store is never touched), a random pin in `data/hsm.pin` (mode 0600) and a token labelled "vaultd".
Every node gets `SOFTHSM2_CONF=<folder>/data/softhsm2.conf`; `initialize` asks for recovery keys, and `unseal`
waits for the nodes to unseal themselves.

Standard library only, so that it runs before the project is installed. Every wait has a deadline and ends
with an error naming what did not happen and, for a process that died, the end of its log.

    DevClusterError        a node refused, a process died, or the config cannot be run
    └── WaitTimeout        a deadline passed (also a TimeoutError)

`DevCluster.request` is raw and raises only ConnectionError, when a node gives no HTTP answer at all.
"""

import argparse
import contextlib
import dataclasses
import email.message
import http.client
import ipaddress
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request

repo_root = pathlib.Path(__file__).resolve().parents[1]
start_timeout_seconds = 30.0  # a spawned node must answer /v1/sys/health by then
probe_timeout_seconds = 2.0  # one health or leader probe; a loaded node may be slow
poll_interval_seconds = 0.1
stop_timeout_seconds = 10.0  # SIGTERM, then SIGKILL after this long
reap_timeout_seconds = 10.0  # after SIGKILL
raft_key_timeout_seconds = 60.0
log_tail_bytes = 4000
watch_interval_seconds = 1.0  # how often `run` looks for a node that died
init_shares, init_threshold = 5, 3  # what `run` initialises with, as `vault operator init`
softhsm_lib = "/usr/lib/softhsm/libsofthsm2.so"  # Debian's softhsm2
softhsm_conf_name = "data/softhsm2.conf"  # these three relative to the config's folder
softhsm_token_dir_name = "data/softhsm"
hsm_pin_file_name = "data/hsm.pin"
hsm_token_label, hsm_key_label = "vaultd", "vaultd-unseal"
hsm_pin_bytes = 16  # random bytes of a generated pin (written as hex)
softhsm_util_timeout_seconds = 30.0
assert poll_interval_seconds < probe_timeout_seconds < start_timeout_seconds
assert 1 <= init_threshold <= init_shares


class DevClusterError(RuntimeError):
    """A node refused, a process died, or the config cannot be run; the message says which and why."""


class WaitTimeout(DevClusterError, TimeoutError):
    """A deadline passed; the message names what did not happen and what was last seen."""


@dataclasses.dataclass(frozen=True)
class Response:
    """One raw HTTP answer: redirects are not followed and an error status does not raise."""

    status: int
    headers: email.message.Message  # case-insensitive: headers["location"] == headers["Location"]
    body: bytes

    def json(self):
        return json.loads(self.body)

    def text(self) -> str:
        return self.body.decode(errors="replace").strip()


@dataclasses.dataclass(frozen=True)
class _Node:
    id: str
    host: str
    port: int
    raft_addr: str
    bootstrap: bool


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises HTTPError, which `request` returns as the response


_opener = urllib.request.build_opener(_NoRedirect(), urllib.request.ProxyHandler({}))


# --- writing a config --------------------------------------------------------------------------------------------


def write_config(directory, *, nodes: int = 3, hosts=None, request_forwarding: str = "forward", joiners: int = 0,
                 name: str = "local", seal: str = "shamir") -> pathlib.Path:
    """Write `directory/cluster.toml`: nodes n1..n<nodes> (the initial voters), then `joiners` more with
    `bootstrap = false`, node i on `hosts[i]` (one host per node, joiners included; default 127.0.0.1) with free
    API and Raft ports, `data_dir = "data/<id>"`, the `seal` ("shamir", or "pkcs11": a new SoftHSM2 token, see
    `make_softhsm_token`) and a fresh key in data/raft.key (mode 0600).
    Refuses to overwrite a cluster.toml: a cluster keeps its key."""
    directory = pathlib.Path(directory)
    total = nodes + joiners
    hosts = ["127.0.0.1"] * total if hosts is None else [str(host) for host in hosts]
    if nodes < 1 or joiners < 0:
        raise ValueError(f"write_config: want nodes >= 1 and joiners >= 0, not nodes={nodes} joiners={joiners}")
    if len(hosts) != total:
        raise ValueError(f"write_config: hosts has {len(hosts)} entries for {total} nodes (joiners included)")
    if request_forwarding not in ("forward", "redirect"):
        raise ValueError(f"write_config: request_forwarding must be forward or redirect, not {request_forwarding!r}")
    if seal not in ("shamir", "pkcs11"):
        raise ValueError(f"write_config: seal must be shamir or pkcs11, not {seal!r}")
    if seal == "pkcs11" and shutil.which("softhsm2-util") is None:
        raise DevClusterError("write_config: softhsm2-util is not installed: apt-get install softhsm2")
    path = directory / "cluster.toml"
    if path.exists():
        raise FileExistsError(f"{path} exists; a cluster keeps its config and key")
    ports = _free_ports(hosts, 2)
    (directory / "data").mkdir(mode=0o700, parents=True, exist_ok=True)
    make_raft_key(directory / "data" / "raft.key")
    lines = ["# Written by vaultd.devcluster.write_config.", "", "[cluster]", f"name = {_toml(name)}",
             'raft_key_file = "data/raft.key"', f"request_forwarding = {_toml(request_forwarding)}", "",
             "[seal]", f"type = {_toml(seal)}"]
    if seal == "pkcs11":
        make_softhsm_token(directory)
        lines += pkcs11_seal_table().splitlines()[2:]
    for index, host in enumerate(hosts):
        node_id = f"n{index + 1}"
        api_port, raft_port = ports[index]
        lines += ["", "[[node]]", f"id = {_toml(node_id)}", f"api_addr = {_toml(f'{host}:{api_port}')}",
                  f"raft_addr = {_toml(f'{host}:{raft_port}')}", f"data_dir = {_toml('data/' + node_id)}"]
        if index >= nodes:
            lines.append("bootstrap = false")
    path.write_text("\n".join(lines) + "\n")
    return path


def pkcs11_seal_table(disabled: bool = False) -> str:
    """The `[seal]` table of a cluster whose SoftHSM2 token `make_softhsm_token` made; `disabled` for a migration
    away from it (to Shamir)."""
    lines = ["[seal]", 'type = "pkcs11"', f"lib = {_toml(softhsm_lib)}", f"token_label = {_toml(hsm_token_label)}",
             f"pin_file = {_toml(hsm_pin_file_name)}", f"key_label = {_toml(hsm_key_label)}",
             'mechanism = "CKM_AES_GCM"', "generate_key = true"]
    return "\n".join(lines + (["disabled = true"] if disabled else []))


def rewrite_seal_table(config_path, table: str) -> None:
    """Replace the `[seal]` table of a cluster.toml written by `write_config` (a seal change, then a restart)."""
    path = pathlib.Path(config_path)
    text = path.read_text()
    start, end = text.index("[seal]"), text.index("[[node]]")
    path.write_text(text[:start] + table + "\n\n" + text[end:])


def _free_ports(hosts: list[str], per_host: int) -> list[list[int]]:
    """`per_host` ports for each entry of `hosts`, each free on its host when asked. The sockets all stay bound
    until every port is chosen, so no two entries get the same one; a port may still be taken before the node
    binds it, which a start then reports as the node's error."""
    sockets = []
    try:
        ports = []
        for host in hosts:
            family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
            chosen = []
            for _ in range(per_host):
                bound = socket.socket(family, socket.SOCK_STREAM)
                sockets.append(bound)
                bound.bind((host, 0))
                chosen.append(bound.getsockname()[1])
            ports.append(chosen)
        return ports
    finally:
        for bound in sockets:
            bound.close()


def make_raft_key(path) -> None:
    """Write a new cluster key at `path` with `vaultd operator raft-key` (mode 0600; never overwrites one)."""
    path = pathlib.Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    completed = subprocess.run([sys.executable, "-m", "vaultd", "operator", "raft-key", str(path)],
                               capture_output=True, text=True, env=_child_environment(None),
                               timeout=raft_key_timeout_seconds, cwd=repo_root)
    if completed.returncode != 0:
        raise DevClusterError(f"vaultd operator raft-key {path} exited {completed.returncode}: "
                              f"{completed.stderr.strip()}")


def make_softhsm_token(directory, *, token_label: str = hsm_token_label, pin: str | None = None,
                       pin_file: str | None = hsm_pin_file_name) -> pathlib.Path:
    """Under `directory` (a cluster's config folder): `data/softhsm/` (the token directory, mode 0700),
    `data/softhsm2.conf` pointing at it, and a SoftHSM2 token labelled `token_label` whose user pin is `pin`, or
    a random one written to `directory/pin_file` (mode 0600). The security officer pin is random and kept
    nowhere. Refuses when the conf or the token directory exists. Returns the conf's path."""
    directory = pathlib.Path(directory)
    conf, token_dir = directory / softhsm_conf_name, directory / softhsm_token_dir_name
    for existing in (conf, token_dir):
        if existing.exists():
            raise DevClusterError(f"{existing} exists; remove {conf} and {token_dir} to make a new token")
    if pin is None:
        if pin_file is None:
            raise ValueError("make_softhsm_token: give a pin or a pin_file to write a random one to")
        pin = os.urandom(hsm_pin_bytes).hex()
        (directory / pin_file).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_private(directory / pin_file, pin + "\n")
    token_dir.mkdir(mode=0o700, parents=True)
    write_softhsm_conf(conf, token_dir)
    init_softhsm_token(conf, token_label, pin, os.urandom(hsm_pin_bytes).hex())
    return conf


def write_softhsm_conf(conf_path, token_dir) -> None:
    """A SoftHSM2 config of its own (for SOFTHSM2_CONF): file objects in `token_dir`, errors only in syslog."""
    token_dir = pathlib.Path(token_dir).resolve()
    assert str(token_dir).isprintable() and "\n" not in str(token_dir), token_dir
    pathlib.Path(conf_path).write_text(
        "# Written by vaultd.devcluster: this cluster's own SoftHSM2 token store (never /var/lib/softhsm).\n"
        f"directories.tokendir = {token_dir}\nobjectstore.backend = file\nlog.level = ERROR\n")


def init_softhsm_token(conf_path, label: str, pin: str, so_pin: str) -> None:
    """`softhsm2-util --init-token --free` in the store of `conf_path` (SOFTHSM2_CONF), never the system's."""
    command = ["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", so_pin]
    environment = {**os.environ, "SOFTHSM2_CONF": str(pathlib.Path(conf_path).resolve())}
    try:
        completed = subprocess.run(command, capture_output=True, text=True, env=environment,
                                   timeout=softhsm_util_timeout_seconds, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise DevClusterError("softhsm2-util is not installed: apt-get install softhsm2 (`make run` installs it)") \
            from None
    except subprocess.TimeoutExpired:
        raise DevClusterError(f"softhsm2-util --init-token did not finish within {softhsm_util_timeout_seconds:g}s") \
            from None
    if completed.returncode != 0:  # the output names no pin; the command line is not repeated, as it holds them
        output = " ".join((completed.stderr + " " + completed.stdout).split())
        raise DevClusterError(f"softhsm2-util --init-token --label {label} (SOFTHSM2_CONF={conf_path}) exited "
                              f"{completed.returncode}: {output}")


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=probe_timeout_seconds):
            return True
    except OSError:
        return False


def _toml(text: str) -> str:
    assert text.isprintable(), text
    return json.dumps(text)  # a JSON string of printable characters is a TOML basic string


def _join_host_port(host: str, port: int) -> str:
    """As in a URL; cluster.toml writes an IPv6 address bare (`::1:8201`), as vaultd.config reads it."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _child_environment(extra) -> dict[str, str]:
    """This process's environment, `extra` over it, and the repo root first on PYTHONPATH so that
    `python -m vaultd` works without installing the project."""
    environment = {**os.environ, **(extra or {})}
    environment["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(repo_root), environment.get("PYTHONPATH", "")) if part)
    environment.setdefault("PYTHONUNBUFFERED", "1")  # logs arrive as written, and survive a SIGKILL
    return environment


# --- the cluster -------------------------------------------------------------------------------------------------


def _read_nodes(config_path: pathlib.Path) -> tuple[dict, list[_Node]]:
    try:
        document = tomllib.loads(config_path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise DevClusterError(f"{config_path}: cannot read it: {error}") from None
    if (document.get("listener") or {}).get("tls_cert_file"):
        raise DevClusterError(f"{config_path}: [listener] sets TLS, and DevCluster speaks plain http only")
    nodes = []
    for entry in document.get("node") or []:
        try:
            host, _, port = entry["api_addr"].rpartition(":")
            nodes.append(_Node(entry["id"], host.strip("[]"), int(port), entry["raft_addr"],
                               entry.get("bootstrap", True)))
        except (KeyError, ValueError, TypeError, AttributeError) as error:
            raise DevClusterError(f"{config_path}: a [[node]] lacks id, api_addr or raft_addr: {error!r}") from None
    if not nodes:
        raise DevClusterError(f"{config_path}: no [[node]]")
    return document, nodes


class _NotReady(Exception):
    """An answer that a retry may turn into success: no leader yet, or the seal config not replicated yet."""


class DevCluster:
    """The nodes of one cluster.toml as child processes. A context manager: leaving it stops every process
    it started (SIGTERM, then SIGKILL after `stop_timeout_seconds`)."""

    def __init__(self, config_path, *, log_dir=None, env=None, python=sys.executable):
        self.config_path = pathlib.Path(config_path).resolve()
        self.directory = self.config_path.parent
        self.document, nodes = _read_nodes(self.config_path)
        self._nodes = {node.id: node for node in nodes}
        self.node_ids = tuple(node.id for node in nodes)
        self.bootstrap_ids = tuple(node.id for node in nodes if node.bootstrap)
        self.log_dir = pathlib.Path(log_dir) if log_dir is not None else self.directory / "data" / "logs"
        self.seal_type = str((self.document.get("seal") or {}).get("type", "shamir"))
        # A pkcs11 cluster's nodes find its own SoftHSM2 store; a SOFTHSM2_CONF in `env` wins.
        pkcs11_env = {"SOFTHSM2_CONF": str(self.softhsm_conf)} if self.seal_type == "pkcs11" else {}
        self.env = {**pkcs11_env, **(env or {})}
        self.python = str(python)
        self.init_result: dict | None = None
        self.keys: list[str] = []  # hex, as sys/init's "keys"; none for a pkcs11 seal
        self.recovery_keys: list[str] = []  # hex, as sys/init's "recovery_keys" (pkcs11 only)
        self.root_token: str | None = None
        self._processes: dict[str, subprocess.Popen] = {}
        self._paused: set[str] = set()

    def __enter__(self) -> "DevCluster":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # --- addresses -----------------------------------------------------------------------------------------------

    def _node(self, node_id: str) -> _Node:
        try:
            return self._nodes[node_id]
        except KeyError:
            raise DevClusterError(f"no node {node_id!r} in {self.config_path} (nodes: {', '.join(self.node_ids)})") \
                from None

    def api_url(self, node_id: str) -> str:
        node = self._node(node_id)
        return f"http://{_join_host_port(node.host, node.port)}"

    def raft_addr(self, node_id: str) -> str:
        return self._node(node_id).raft_addr

    def log_path(self, node_id: str) -> pathlib.Path:
        return self.log_dir / f"{self._node(node_id).id}.log"

    @property
    def raft_key_file(self) -> pathlib.Path:
        return self.directory / (self.document.get("cluster") or {}).get("raft_key_file", "data/raft.key")

    @property
    def softhsm_conf(self) -> pathlib.Path:
        """The SOFTHSM2_CONF the nodes of a pkcs11 cluster get."""
        return self.directory / softhsm_conf_name

    # --- processes -----------------------------------------------------------------------------------------------

    def start(self, node_id: str | None = None, wait: bool = True) -> None:
        """Spawn `node_id`, or every bootstrap node not running yet; with `wait`, return once each answers
        /v1/sys/health with any status."""
        if node_id is not None and self.running(node_id):
            raise DevClusterError(f"{node_id} is already running (pid {self.pid(node_id)})")
        targets = [node_id] if node_id is not None else [name for name in self.bootstrap_ids if not self.running(name)]
        for target in targets:
            self._spawn(target)
        if wait:
            deadline = time.monotonic() + start_timeout_seconds
            for target in targets:
                self._wait_answering(target, deadline)

    def _spawn(self, node_id: str) -> None:
        node = self._node(node_id)
        if _listening(node.host, node.port):
            raise DevClusterError(f"cannot start {node_id}: something already listens on {self.api_url(node_id)} "
                                  "(a node left running by an earlier run?)")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path(node_id), "ab") as log:
            log.write(f"--- devcluster: starting {node_id} at {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n".encode())
            log.flush()
            self._processes[node_id] = subprocess.Popen(
                [self.python, "-m", "vaultd", "server", "--config", str(self.config_path), "--node", node_id],
                cwd=self.directory, env=_child_environment(self.env), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT)
        self._paused.discard(node_id)

    def _wait_answering(self, node_id: str, deadline: float) -> None:
        while True:
            self._check_alive(node_id)
            try:
                self.request(node_id, "GET", "/v1/sys/health", timeout=probe_timeout_seconds)
                return
            except ConnectionError as error:
                last = error
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"{node_id} did not answer GET {self.api_url(node_id)}/v1/sys/health within "
                                  f"{start_timeout_seconds:g}s ({last}); the end of {self.log_path(node_id)}:\n"
                                  f"{self.log_tail(node_id)}")
            time.sleep(poll_interval_seconds)

    def _check_alive(self, node_id: str) -> None:
        process = self._process(node_id)
        if process.poll() is not None:
            raise DevClusterError(f"{node_id} exited with status {process.returncode}; the end of "
                                  f"{self.log_path(node_id)}:\n{self.log_tail(node_id)}")

    def log_tail(self, node_id: str) -> str:
        try:
            with open(self.log_path(node_id), "rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - log_tail_bytes))
                return log.read().decode(errors="replace")
        except OSError as error:
            return f"(no log: {error})"

    def stop(self, node_id: str | None = None, timeout: float = stop_timeout_seconds) -> None:
        """SIGTERM `node_id` (or every running node), wait up to `timeout` seconds, then SIGKILL."""
        targets = [node_id] if node_id is not None else [name for name in self._processes if self.running(name)]
        for target in targets:
            if self.running(target):
                self._processes[target].send_signal(signal.SIGTERM)
                if target in self._paused:
                    self._processes[target].send_signal(signal.SIGCONT)  # a stopped process acts on no TERM
        deadline = time.monotonic() + timeout
        for target in targets:
            process = self._processes.get(target)
            if process is None:
                continue
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                self._reap(target, "SIGKILL")
            self._paused.discard(target)

    def kill(self, node_id: str, sig: int = signal.SIGKILL) -> None:
        """Send `sig` and wait for the process to exit."""
        self._check_alive(node_id)
        self._processes[node_id].send_signal(sig)
        if node_id in self._paused and sig != signal.SIGKILL:
            self._processes[node_id].send_signal(signal.SIGCONT)
        self._reap(node_id, signal.Signals(sig).name)
        self._paused.discard(node_id)

    def _reap(self, node_id: str, signal_name: str) -> None:
        try:
            self._processes[node_id].wait(timeout=reap_timeout_seconds)
        except subprocess.TimeoutExpired:
            raise WaitTimeout(f"{node_id} (pid {self.pid(node_id)}) did not exit within {reap_timeout_seconds:g}s "
                              f"of {signal_name}") from None

    def pause(self, node_id: str) -> None:
        self._check_alive(node_id)
        self._processes[node_id].send_signal(signal.SIGSTOP)
        self._paused.add(node_id)

    def resume(self, node_id: str) -> None:
        self._check_alive(node_id)
        self._processes[node_id].send_signal(signal.SIGCONT)
        self._paused.discard(node_id)

    def _process(self, node_id: str) -> subprocess.Popen:
        self._node(node_id)
        if node_id not in self._processes:
            raise DevClusterError(f"{node_id} was never started")
        return self._processes[node_id]

    def pid(self, node_id: str) -> int:
        return self._process(node_id).pid

    def running(self, node_id: str) -> bool:
        """Started and not exited (a paused node is running)."""
        self._node(node_id)
        process = self._processes.get(node_id)
        return process is not None and process.poll() is None

    def exit_status(self, node_id: str) -> int | None:
        """The exit status of the node's last process; None while it runs. Negative: killed by that signal."""
        return self._process(node_id).poll()

    def close(self) -> None:
        self.stop()

    # --- the HTTP API --------------------------------------------------------------------------------------------

    def request(self, node_id: str, method: str, path: str, body=None, token: str | None = None,
                headers: dict | None = None, timeout: float = 10.0) -> Response:
        """One request to `node_id`, raw: no redirect is followed and an HTTP error status is returned, not
        raised; only no answer at all raises ConnectionError. `path` is under /v1/ ("sys/health" or
        "/v1/sys/health"); a dict `body` goes as JSON, bytes as application/octet-stream."""
        path = "/" + path.lstrip("/")
        url = self.api_url(node_id) + (path if path.startswith("/v1/") else "/v1" + path)
        data, content_type = None, None
        if isinstance(body, bytes | bytearray):
            data, content_type = bytes(body), "application/octet-stream"
        elif body is not None:
            data, content_type = json.dumps(body).encode(), "application/json"
        request = urllib.request.Request(url, data=data, method=method)
        if content_type:
            request.add_header("Content-Type", content_type)
        if token:
            request.add_header("X-Vault-Token", token)
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with _opener.open(request, timeout=timeout) as answer:
                return Response(answer.status, answer.headers, answer.read())
        except urllib.error.HTTPError as error:
            with error:
                return Response(error.code, error.headers or email.message.Message(), error.read())
        except urllib.error.URLError as error:
            raise ConnectionError(f"no answer from {node_id} to {method} {url}: {error.reason}") from error
        except (OSError, http.client.HTTPException) as error:
            raise ConnectionError(f"no answer from {node_id} to {method} {url}: "
                                  f"{error or type(error).__name__}") from error

    def health_status(self, node_id: str) -> int | None:
        """The node's /v1/sys/health status, or None for no answer."""
        try:
            return self.request(node_id, "GET", "/v1/sys/health", timeout=probe_timeout_seconds).status
        except ConnectionError:
            return None

    def initialize(self, shares: int = 1, threshold: int = 1, timeout: float = 30.0) -> dict:
        """PUT sys/init on the running bootstrap nodes in turn until one answers 200, retrying no answer, 5xx and
        429 (no leader yet) until `timeout`; keep the answer in `init_result`, `keys` (or `recovery_keys`) and
        `root_token`. A pkcs11 cluster is asked for `shares` recovery keys, a Shamir one for unseal keys."""
        deadline = time.monotonic() + timeout
        last = "no bootstrap node is running"
        kind = "recovery" if self.seal_type == "pkcs11" else "secret"
        body = {f"{kind}_shares": shares, f"{kind}_threshold": threshold}
        while True:
            for node_id in [name for name in self.bootstrap_ids if self.running(name)]:
                try:
                    response = self.request(node_id, "PUT", "/v1/sys/init", body)
                except ConnectionError as error:
                    last = str(error)
                    continue
                if response.status == 200:
                    self.set_init_result(response.json())
                    return response.json()
                last = f"{node_id} answered PUT /v1/sys/init with HTTP {response.status}: {_errors(response)}"
                if not _retryable(response):
                    raise DevClusterError(f"initialising: {last}")
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"no bootstrap node initialised the cluster within {timeout:g}s; last: {last}")
            time.sleep(poll_interval_seconds)

    def set_init_result(self, result: dict) -> None:
        """Adopt an init answer (from `initialize`, or saved by an earlier run) for `unseal` and `root_token`."""
        keys = "recovery_keys" if self.seal_type == "pkcs11" else "keys"
        if not isinstance(result, dict) or not result.get(keys) or not result.get("root_token"):
            raise DevClusterError(f"an init result needs its {keys} and root_token")
        self.init_result, self.root_token = result, result["root_token"]
        self.keys, self.recovery_keys = list(result.get("keys") or []), list(result.get("recovery_keys") or [])

    def unseal(self, node_id: str | None = None, timeout: float = 30.0) -> None:
        """Unseal `node_id`, or every running node in turn: submit keys until the node says unsealed, retrying
        "not initialized" (a follower without the replicated seal config yet), 5xx, 429 and no answer. A pkcs11
        node unseals itself: this waits for it (`wait_unsealed`)."""
        if self.seal_type == "pkcs11":
            self.wait_unsealed(node_id, timeout)
            return
        if not self.keys:
            raise DevClusterError("unseal: no unseal keys; call initialize() or set_init_result() first")
        targets = [node_id] if node_id is not None else [name for name in self.node_ids if self.running(name)]
        if not targets:
            raise DevClusterError("unseal: no node is running")
        deadline = time.monotonic() + timeout
        for target in targets:
            while True:
                self._check_alive(target)
                try:
                    self._submit_keys(target)
                    break
                except (ConnectionError, _NotReady) as error:
                    last = error
                if time.monotonic() >= deadline:
                    raise WaitTimeout(f"{target} was not unsealed within {timeout:g}s; last: {last}")
                time.sleep(poll_interval_seconds)

    def wait_unsealed(self, node_id: str | None = None, timeout: float = 30.0) -> None:
        """Wait until `node_id`, or every running node, says `"sealed": false` in sys/seal-status."""
        targets = [node_id] if node_id is not None else [name for name in self.node_ids if self.running(name)]
        if not targets:
            raise DevClusterError("wait_unsealed: no node is running")
        deadline = time.monotonic() + timeout
        for target in targets:
            while True:
                self._check_alive(target)
                try:
                    response = self.request(target, "GET", "/v1/sys/seal-status", timeout=probe_timeout_seconds)
                    status = _json_object(response)
                    if response.status == 200 and status.get("sealed") is False:
                        break
                    last = f"HTTP {response.status}, " + (f"sealed {status.get('sealed')}, type {status.get('type')}"
                                                          if response.status == 200 else _errors(response))
                except ConnectionError as error:
                    last = str(error)
                if time.monotonic() >= deadline:
                    raise WaitTimeout(f"{target} did not unseal itself within {timeout:g}s; last: {last}; the end of "
                                      f"{self.log_path(target)}:\n{self.log_tail(target)}")
                time.sleep(poll_interval_seconds)

    def _submit_keys(self, node_id: str) -> None:
        for key in self.keys:  # a share given twice counts once, so a retry may start over
            response = self.request(node_id, "PUT", "/v1/sys/unseal", {"key": key})
            if response.status != 200:
                message = f"{node_id} answered PUT /v1/sys/unseal with HTTP {response.status}: {_errors(response)}"
                raise (_NotReady if _retryable(response) else DevClusterError)(message)
            if _json_object(response).get("sealed") is False:
                return
        raise DevClusterError(f"{node_id} is still sealed after all {len(self.keys)} unseal keys: are they this "
                              "cluster's?")

    def wait_for_leader(self, timeout: float = 30.0) -> str:
        """The id of a running node whose health is 200 (active) and whose sys/leader says is_self."""
        deadline = time.monotonic() + timeout
        while True:
            statuses = {}
            for node_id in [name for name in self.node_ids if self.running(name)]:
                statuses[node_id] = self.health_status(node_id)
                if statuses[node_id] != 200:
                    continue
                with contextlib.suppress(ConnectionError):
                    leader = self.request(node_id, "GET", "/v1/sys/leader", timeout=probe_timeout_seconds)
                    if leader.status == 200 and _json_object(leader).get("is_self") is True:
                        return node_id
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"no running node became the active leader within {timeout:g}s: "
                                  f"{_describe(statuses)}")
            time.sleep(poll_interval_seconds)

    def wait_healthy(self, timeout: float = 30.0) -> str:
        """Wait until every running node is unsealed, exactly one active (health 200) and the others
        performance standbys (473); return the active node's id."""
        deadline = time.monotonic() + timeout
        while True:
            running = [name for name in self.node_ids if self.running(name)]
            if not running:
                raise DevClusterError("wait_healthy: no node is running")
            statuses = {node_id: self.health_status(node_id) for node_id in running}
            active = [node_id for node_id, status in statuses.items() if status == 200]
            if len(active) == 1 and all(status in (200, 473) for status in statuses.values()):
                return active[0]
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"the cluster was not healthy within {timeout:g}s (want one node active, the "
                                  f"others standby): {_describe(statuses)}")
            time.sleep(poll_interval_seconds)


_health_meanings = {200: "active", 473: "standby", 429: "standby without a leader", 503: "sealed",
                    501: "not initialized"}


def _describe(statuses: dict[str, int | None]) -> str:
    if not statuses:
        return "no node is running"
    return ", ".join(f"{node_id} " + ("no answer" if status is None else
                                      f"{status} {_health_meanings.get(status, 'unexpected')}")
                     for node_id, status in statuses.items())


def _json_object(response: Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _errors(response: Response) -> str:
    errors = _json_object(response).get("errors")
    if isinstance(errors, list) and errors:
        return "; ".join(str(error).strip() for error in errors)
    return response.text()[:200] or "(empty body)"


def _retryable(response: Response) -> bool:
    """No leader yet (5xx, 429), a standby redirecting to the active node (307: the loop asks every node), or a
    follower that has not received the seal configuration yet."""
    if response.status >= 500 or response.status in (307, 429):
        return True
    return response.status == 400 and "not initialized" in _errors(response).lower()


# --- `python -m vaultd.devcluster run CONFIG`: `make run` --------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vaultd.devcluster",
                                     description="Run the local vaultd cluster of a cluster.toml.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="start, initialise (once) and unseal every bootstrap node; Ctrl-C stops")
    run.add_argument("config", help="the cluster.toml")
    arguments = parser.parse_args(argv)
    return run_until_stopped(arguments.config)


def run_until_stopped(config_path, out=None) -> int:
    """Bring the cluster up, print how to reach it, and wait for Ctrl-C or SIGTERM; then stop the nodes."""
    out = out or sys.stdout
    try:
        cluster = DevCluster(config_path)
        prepare(cluster, out)
    except DevClusterError as error:
        print(f"devcluster: {error}", file=sys.stderr)
        return 2
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        bring_up(cluster, out)
        _watch(cluster, out)
    except DevClusterError as error:
        print(f"devcluster: {error}\nThe nodes' logs are in {cluster.log_dir}.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nStopping the nodes (SIGTERM) ...", file=out, flush=True)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave nodes behind
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            cluster.close()
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, previous)
    print("Stopped.", file=out)
    return 0


def _interrupt(signal_number, frame):
    raise KeyboardInterrupt


def prepare(cluster: DevCluster, out) -> None:
    """Create what is missing: the Raft key file, and a pkcs11 cluster's SoftHSM2 token."""
    if cluster.seal_type not in ("shamir", "pkcs11"):
        raise DevClusterError(f"{cluster.config_path}: [seal] type = {cluster.seal_type!r}: want shamir or pkcs11")
    if not cluster.raft_key_file.exists():
        make_raft_key(cluster.raft_key_file)
        print(f"Wrote a new cluster key to {cluster.raft_key_file} (mode 0600).", file=out)
    if cluster.seal_type == "pkcs11":
        _prepare_softhsm(cluster, out)


def _prepare_softhsm(cluster: DevCluster, out) -> None:
    """With SoftHSM2 as the [seal] lib and no data/softhsm2.conf yet: make the token, with the pin of the
    config's pin_file (a random one written there when the file is missing) or of its pin_env variable."""
    seal = cluster.document.get("seal") or {}
    if "softhsm" not in os.path.basename(str(seal.get("lib", ""))).lower() or cluster.softhsm_conf.exists():
        return  # an HSM of the operator's own, or the token made by an earlier run
    token_dir = cluster.directory / softhsm_token_dir_name
    if token_dir.exists():
        raise DevClusterError(f"{token_dir} exists but {cluster.softhsm_conf} does not; remove {token_dir} (and "
                              "the nodes' data, which its key sealed) to start afresh")
    pin, pin_file = None, seal.get("pin_file")
    if not pin_file:
        pin = os.environ.get(str(seal.get("pin_env", "")))
        if not pin:
            raise DevClusterError(f"[seal] pin_env = {seal.get('pin_env')!r} is not set: set it to the pin the new "
                                  "SoftHSM2 token gets, or use pin_file")
    elif (cluster.directory / pin_file).exists():
        pin = _read_pin_file(cluster.directory / pin_file)
    label = str(seal.get("token_label") or hsm_token_label)
    make_softhsm_token(cluster.directory, token_label=label, pin=pin, pin_file=pin_file)
    where = f"in {pin_file} (mode 0600)" if pin_file else f"${seal.get('pin_env')}"
    print(f"Made the SoftHSM2 token {label!r} in {token_dir} (SOFTHSM2_CONF={cluster.softhsm_conf}); its pin is "
          f"{where}.", file=out)


def _read_pin_file(path: pathlib.Path) -> str:
    try:
        pin = path.read_text().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as error:
        raise DevClusterError(f"{path}: cannot read the pin: {error}") from None
    if not pin:
        raise DevClusterError(f"{path}: the pin file is empty")
    return pin


def bring_up(cluster: DevCluster, out) -> str:
    """Start every bootstrap node; initialise the cluster unless data/init.json holds its keys (then write it,
    mode 0600); unseal every node; wait until healthy; print the summary. Returns the active node's id."""
    cluster.start()
    init_path = cluster.directory / "data" / "init.json"
    saved = init_path.exists()
    if saved:
        try:
            cluster.set_init_result(json.loads(init_path.read_text()))
        except (OSError, ValueError, DevClusterError) as error:
            raise DevClusterError(f"{init_path}: cannot use it ({error}); remove it and the nodes' data to "
                                  "start afresh") from None
    else:
        result = cluster.initialize(shares=init_shares, threshold=init_threshold)
        _write_private(init_path, json.dumps(result, indent=2) + "\n")
    # A pkcs11 cluster's nodes unseal themselves: `unseal` waits for them.
    try:
        cluster.unseal()
    except WaitTimeout as error:
        if saved:
            raise DevClusterError(f"{error}\nIf {init_path} is from an earlier cluster whose data is gone, remove "
                                  "it to initialise afresh.") from None
        raise
    active = cluster.wait_healthy()
    print(summary(cluster, active, init_path, initialised_now=not saved), file=out, flush=True)
    return active


def _write_private(path: pathlib.Path, text: str) -> None:
    """Create `path` with mode 0600 from the start; never replace an existing file."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())


def summary(cluster: DevCluster, active: str, init_path: pathlib.Path, initialised_now: bool) -> str:
    rows = [["Node", "API address", "Raft address", "Role"]]
    for node_id in cluster.node_ids:
        if cluster.running(node_id):
            role = {200: "active", 473: "standby"}.get(cluster.health_status(node_id) or 0, "unhealthy")
        else:
            role = "not started" + ("" if node_id in cluster.bootstrap_ids else " (bootstrap = false: joins later)")
        rows.append([node_id, cluster.api_url(node_id), cluster.raft_addr(node_id), role])
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    table = "\n".join("    ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                      for row in rows)
    if cluster.seal_type == "pkcs11":
        how = (f"initialised now with {init_shares} recovery key shares, threshold {init_threshold}; "
               if initialised_now else "") + "auto-unsealed through PKCS#11"
        keys = [f"Recovery keys and root token: {init_path} (mode 0600). Recovery keys authorise generate-root and "
                "rekey; they never decrypt data."]
    else:
        how = (f"initialised now with {init_shares} unseal key shares, threshold {init_threshold}" if initialised_now
               else f"unsealed with the keys in {init_path}")
        keys = [f"Unseal keys and root token: {init_path} (mode 0600).",
                "  Keeping unseal keys on disk is for this local cluster only, until the PKCS#11 auto-unseal issue "
                "lands."]
    return "\n".join([
        f'vaultd cluster "{(cluster.document.get("cluster") or {}).get("name", "vaultd")}": '
        f"{_count(sum(map(cluster.running, cluster.node_ids)), 'node')} up, {how}.", "", table, "",
        *keys,
        f"Root token: {cluster.root_token}",
        f"Logs: {cluster.log_dir}/<node>.log", "",
        f"    export VAULT_ADDR='{cluster.api_url(active)}'",
        f"    export VAULT_TOKEN='{cluster.root_token}'", "",
        "Ctrl-C stops the nodes.",
    ])


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _watch(cluster: DevCluster, out) -> None:
    """Until interrupted: say when a node exits on its own."""
    alive = {node_id for node_id in cluster.node_ids if cluster.running(node_id)}
    while True:
        time.sleep(watch_interval_seconds)
        for node_id in sorted(alive):
            if not cluster.running(node_id):
                alive.discard(node_id)
                print(f"{node_id} exited with status {cluster.exit_status(node_id)}; its log: "
                      f"{cluster.log_path(node_id)}", file=out, flush=True)


if __name__ == "__main__":
    sys.exit(main())
