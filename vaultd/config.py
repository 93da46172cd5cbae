"""cluster.toml → frozen dataclasses. An unknown key, a missing value or a bad value stops the start with
one clear line naming the key (ConfigError). Relative paths resolve from the file's own folder."""

import dataclasses
import ipaddress
import pathlib
import tomllib


class ConfigError(Exception):
    """The configuration is wrong; the message names the key."""


@dataclasses.dataclass(frozen=True)
class NodeConfig:
    id: str
    api_addr: str
    raft_addr: str
    data_dir: pathlib.Path
    bootstrap: bool = True  # in the initial voter set; false: waits for sys/storage/raft/join


@dataclasses.dataclass(frozen=True)
class SealConfig:
    type: str
    lib: str = ""
    token_label: str = ""
    slot: int | None = None
    pin_env: str = ""
    pin_file: pathlib.Path | None = None
    key_label: str = ""
    mechanism: str = "CKM_AES_GCM"
    generate_key: bool = False
    disabled: bool = False  # pkcs11 only: migrate away from this seal to Shamir (seal_migration.py)


@dataclasses.dataclass(frozen=True)
class ListenerConfig:
    tls_cert_file: pathlib.Path | None = None
    tls_key_file: pathlib.Path | None = None


@dataclasses.dataclass(frozen=True)
class ClusterConfig:
    name: str
    raft_key_file: pathlib.Path
    request_forwarding: str
    seal: SealConfig
    nodes: tuple[NodeConfig, ...]
    listener: ListenerConfig
    audit_file: pathlib.Path | None = None
    # [raft] snapshot_threshold: journal entries after which a node snapshots its store and cuts its journal
    raft_snapshot_threshold: int = 5000
    # [cluster] unsafe_stale_reads: TEST ONLY (jepsen_lite's mutation run). The leader skips its read barrier,
    # so a deposed leader can serve stale reads. Refused unless VAULTD_ALLOW_UNSAFE=1 (checked at start).
    unsafe_stale_reads: bool = False

    @property
    def bootstrap_nodes(self) -> tuple[NodeConfig, ...]:
        return tuple(node for node in self.nodes if node.bootstrap)

    def node(self, node_id: str) -> NodeConfig:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise ConfigError(f"node: no [[node]] has id = {node_id!r}")


_tables = {
    "cluster": {"name", "raft_key_file", "request_forwarding", "unsafe_stale_reads"},
    "seal": {"type", "lib", "token_label", "slot", "pin_env", "pin_file", "key_label", "mechanism", "generate_key",
             "disabled"},
    "node": {"id", "api_addr", "raft_addr", "data_dir", "bootstrap"},
    "listener": {"tls_cert_file", "tls_key_file"},
    "telemetry": {"prometheus_retention_time", "disable_hostname"},
    "audit": {"file"},
    "raft": {"snapshot_threshold"},
}


def load(path: str | pathlib.Path) -> ClusterConfig:
    path = pathlib.Path(path)
    try:
        document = tomllib.loads(path.read_text())
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    return parse(document, path.resolve().parent)


def parse(document: dict, base: pathlib.Path) -> ClusterConfig:
    _check_keys(document)
    cluster = document.get("cluster", {})
    listener = document.get("listener", {})
    config = ClusterConfig(
        name=_string(cluster, "cluster.name", default="vaultd"),
        raft_key_file=base / _string(cluster, "cluster.raft_key_file"),
        request_forwarding=_choice(cluster, "cluster.request_forwarding", ("forward", "redirect"), "forward"),
        seal=_seal(document.get("seal", {"type": "shamir"}), base),
        nodes=tuple(_node(entry, base, position) for position, entry in enumerate(document.get("node", []))),
        listener=ListenerConfig(
            tls_cert_file=_optional_path(listener, "listener.tls_cert_file", base),
            tls_key_file=_optional_path(listener, "listener.tls_key_file", base),
        ),
        audit_file=_optional_path(document.get("audit", {}), "audit.file", base),
        raft_snapshot_threshold=_optional_int(document.get("raft", {}), "raft.snapshot_threshold") or 5000,
        unsafe_stale_reads=_bool(cluster, "cluster.unsafe_stale_reads", False),
    )
    _check_relations(config)
    return config


def _check_keys(document: dict) -> None:
    for table, value in document.items():
        if table not in _tables:
            raise ConfigError(f"{table}: unknown table")
        for entry in value if isinstance(value, list) else [value]:
            if not isinstance(entry, dict):
                raise ConfigError(f"{table}: must be a table")
            for key in entry:
                if (table, key) == ("seal", "pin"):
                    raise ConfigError("seal.pin: never put the pin in cluster.toml; use pin_env or pin_file")
                if key not in _tables[table]:
                    raise ConfigError(f"{table}.{key}: unknown key")


def _seal(table: dict, base: pathlib.Path) -> SealConfig:
    seal_type = _choice(table, "seal.type", ("shamir", "pkcs11"), None)
    if seal_type == "shamir":
        return SealConfig(type="shamir")
    if not table.get("pin_env") and not table.get("pin_file"):
        raise ConfigError("seal.pin_env: a pkcs11 seal needs pin_env or pin_file")
    if not table.get("token_label") and table.get("slot") is None:
        raise ConfigError("seal.token_label: a pkcs11 seal needs token_label or slot")
    return SealConfig(
        type="pkcs11",
        lib=_string(table, "seal.lib"),
        token_label=_string(table, "seal.token_label", default=""),
        slot=_optional_int(table, "seal.slot"),
        pin_env=_string(table, "seal.pin_env", default=""),
        pin_file=_optional_path(table, "seal.pin_file", base),
        key_label=_string(table, "seal.key_label"),
        mechanism=_choice(table, "seal.mechanism", ("CKM_AES_GCM",), "CKM_AES_GCM"),
        generate_key=_bool(table, "seal.generate_key", False),
        disabled=_bool(table, "seal.disabled", False),
    )


def _node(table: dict, base: pathlib.Path, position: int) -> NodeConfig:
    where = f"node[{position}]"
    node = NodeConfig(
        id=_string(table, f"{where}.id"),
        api_addr=_address(table, f"{where}.api_addr"),
        raft_addr=_address(table, f"{where}.raft_addr"),
        data_dir=base / _string(table, f"{where}.data_dir"),
        bootstrap=_bool(table, f"{where}.bootstrap", True),
    )
    return node


def _check_relations(config: ClusterConfig) -> None:
    if not config.nodes:
        raise ConfigError("node: at least one [[node]] is needed")
    if not any(node.bootstrap for node in config.nodes):
        raise ConfigError("node.bootstrap: at least one [[node]] must bootstrap the cluster")
    seen: dict[tuple[str, str], str] = {}
    for node in config.nodes:
        for key, value in (("id", node.id), ("api_addr", node.api_addr), ("raft_addr", node.raft_addr),
                           ("data_dir", str(node.data_dir))):
            if (key, value) in seen:
                raise ConfigError(f"node.{key}: {value!r} is used by two nodes")
            seen[(key, value)] = node.id
    if (config.listener.tls_cert_file is None) != (config.listener.tls_key_file is None):
        raise ConfigError("listener.tls_key_file: tls_cert_file and tls_key_file go together")


def _string(table: dict, key: str, default: str | None = None) -> str:
    value = table.get(key.rsplit(".", 1)[-1], default)
    if value is None:
        raise ConfigError(f"{key}: missing")
    if not isinstance(value, str):
        raise ConfigError(f"{key}: must be a string")
    return value


def _choice(table: dict, key: str, choices: tuple[str, ...], default: str | None) -> str:
    value = _string(table, key, default)
    if value not in choices:
        raise ConfigError(f"{key}: must be one of {', '.join(choices)}, not {value!r}")
    return value


def _bool(table: dict, key: str, default: bool) -> bool:
    value = table.get(key.rsplit(".", 1)[-1], default)
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: must be true or false")
    return value


def _optional_int(table: dict, key: str) -> int | None:
    value = table.get(key.rsplit(".", 1)[-1])
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise ConfigError(f"{key}: must be a non-negative integer")
    return value


def _optional_path(table: dict, key: str, base: pathlib.Path) -> pathlib.Path | None:
    value = table.get(key.rsplit(".", 1)[-1])
    if value is None:
        return None
    return base / _string(table, key)


def _address(table: dict, key: str) -> str:
    value = _string(table, key)
    host, _, port = value.rpartition(":")
    try:
        address = ipaddress.ip_address(host)
        port_number = int(port)
    except ValueError:
        raise ConfigError(f"{key}: must be IP:port, not {value!r}") from None
    if not 0 < port_number < 65536:
        raise ConfigError(f"{key}: the port must be 1 to 65535, not {port}")
    return f"{address}:{port_number}"
