"""cluster.toml: the shipped file parses; every wrong key or value stops with one line naming the key."""

import pathlib

import pytest

from vaultd import config

ROOT = pathlib.Path(__file__).resolve().parents[2]

MINIMAL = """
[cluster]
raft_key_file = "data/raft.key"

[seal]
type = "shamir"

[[node]]
id = "n1"
api_addr = "127.0.0.1:8201"
raft_addr = "127.0.0.1:8301"
data_dir = "data/n1"
"""


def write(tmp_path, text):
    path = tmp_path / "cluster.toml"
    path.write_text(text)
    return path


def test_the_shipped_cluster_toml_parses_with_paths_relative_to_it():
    cluster = config.load(ROOT / "cluster.toml")
    assert [node.id for node in cluster.nodes] == ["n1", "n2", "n3"]
    assert cluster.node("n2").data_dir == ROOT / "data" / "n2"
    assert cluster.raft_key_file == ROOT / "data" / "raft.key"
    assert cluster.seal.type == "pkcs11" and cluster.seal.pin_file == ROOT / "data" / "hsm.pin"
    assert cluster.request_forwarding == "forward"


def test_a_minimal_shamir_config(tmp_path):
    cluster = config.load(write(tmp_path, MINIMAL))
    assert cluster.seal.type == "shamir"
    assert cluster.node("n1").api_addr == "127.0.0.1:8201"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('id = "n1"', 'id = "n1"\nport = 3'), "node.port: unknown key"),
        (("[cluster]", "[clusterr]"), "clusterr: unknown table"),
        (('raft_key_file = "data/raft.key"', ""), "cluster.raft_key_file: missing"),
        (('type = "shamir"', 'type = "awskms"'), "seal.type: must be one of shamir, pkcs11"),
        (('api_addr = "127.0.0.1:8201"', 'api_addr = "localhost"'), "node[0].api_addr: must be IP:port"),
        (('api_addr = "127.0.0.1:8201"', 'api_addr = "127.0.0.1:99999"'), "node[0].api_addr: the port"),
        (('api_addr = "127.0.0.1:8201"', "api_addr = 8201"), "node[0].api_addr: must be a string"),
        (('type = "shamir"', 'type = "pkcs11"\npin = "1234"'), "seal.pin: never put the pin"),
        (('type = "shamir"', 'type = "pkcs11"\ntoken_label = "t"\nkey_label = "k"\nlib = "x"'), "seal.pin_env"),
        (("[cluster]", "[cluster]\nrequest_forwarding = 'sometimes'"), "cluster.request_forwarding: must be"),
    ],
)
def test_a_bad_config_names_the_key(tmp_path, change, message):
    old, new = change
    with pytest.raises(config.ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config.load(write(tmp_path, MINIMAL.replace(old, new)))


def test_two_nodes_on_one_address_are_refused(tmp_path):
    text = MINIMAL + MINIMAL[MINIMAL.index("[[node]]") :].replace('"n1"', '"n2"').replace("data/n1", "data/n2")
    with pytest.raises(config.ConfigError, match="node.api_addr: '127.0.0.1:8201' is used by two nodes"):
        config.load(write(tmp_path, text))


def test_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(config.ConfigError, match="cannot read"):
        config.load(tmp_path / "missing.toml")
    with pytest.raises(config.ConfigError, match="not valid TOML"):
        config.load(write(tmp_path, "[cluster"))


def test_an_unknown_node_is_named(tmp_path):
    with pytest.raises(config.ConfigError, match="no \\[\\[node\\]\\] has id = 'n9'"):
        config.load(write(tmp_path, MINIMAL)).node("n9")
