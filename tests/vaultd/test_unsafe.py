"""The test-only `unsafe_stale_reads` setting is refused unless VAULTD_ALLOW_UNSAFE=1 is set."""

import os
import subprocess
import sys

from vaultd.devcluster import repo_root, write_config


def test_unsafe_stale_reads_is_refused_without_the_environment_switch(tmp_path):
    config = write_config(tmp_path, nodes=1)
    config.write_text(config.read_text().replace("[cluster]\n", "[cluster]\nunsafe_stale_reads = true\n"))
    environment = {key: value for key, value in os.environ.items() if key != "VAULTD_ALLOW_UNSAFE"}
    result = subprocess.run([sys.executable, "-m", "vaultd", "server", "--config", str(config), "--node", "n1"],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path,
                            env={**environment, "PYTHONPATH": str(repo_root)})
    assert result.returncode == 2
    assert "unsafe_stale_reads" in result.stderr and "VAULTD_ALLOW_UNSAFE=1" in result.stderr
