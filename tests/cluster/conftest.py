"""Real 3-node vaultd clusters on loopback: real processes, real pysyncobj, real HTTP (vaultd/devcluster.py).

`cluster` is initialised (1 share), unsealed on every node, healthy, with KV v2 at secret/. Every node is
stopped by PID afterwards; a failing test keeps the node logs in its tmp_path.
"""

import dataclasses
import pathlib

import pytest

from vaultd.devcluster import DevCluster, write_config

pytestmark = pytest.mark.timeout(180)


@dataclasses.dataclass
class Running:
    devcluster: DevCluster
    directory: pathlib.Path
    leader: str

    @property
    def token(self) -> str:
        return self.devcluster.root_token

    def standbys(self) -> list[str]:
        return [node for node in self.devcluster.bootstrap_ids if node != self.leader]

    def url(self, node: str) -> str:
        return self.devcluster.api_url(node)

    def refresh_leader(self) -> str:
        self.leader = self.devcluster.wait_for_leader(timeout=30)
        return self.leader


def start_cluster(directory: pathlib.Path, *, raft_table: str = "", **options) -> Running:
    config = write_config(directory, **options)
    if raft_table:
        config.write_text(config.read_text() + "\n[raft]\n" + raft_table + "\n")
    devcluster = DevCluster(config, log_dir=directory / "logs")
    try:
        devcluster.start()
        devcluster.initialize(shares=1, threshold=1)  # recovery shares for a pkcs11 seal
        devcluster.unseal()
        leader = devcluster.wait_healthy(timeout=60)
        mounted = devcluster.request(leader, "POST", "/v1/sys/mounts/secret",
                                     {"type": "kv", "options": {"version": "2"}}, token=devcluster.root_token)
        assert mounted.status == 204, mounted.text()
    except BaseException:
        devcluster.close()
        raise
    return Running(devcluster, directory, leader)


@pytest.fixture
def cluster(tmp_path):
    running = start_cluster(tmp_path)
    yield running
    running.devcluster.close()
