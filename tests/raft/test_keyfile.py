"""The cluster key file: generated 0600 with 256 random bits; every way it can be wrong is refused with one
line naming the file."""

import base64
import os

import pytest

from raft import keyfile


def test_a_generated_key_is_256_bits_and_private(tmp_path):
    path = str(tmp_path / "raft.key")
    keyfile.generate(path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    first = keyfile.load(path)
    assert len(first) == 32
    other = str(tmp_path / "other.key")
    keyfile.generate(other)
    assert keyfile.load(other) != first
    with pytest.raises(FileExistsError):
        keyfile.generate(path)  # never overwrites a cluster's key


@pytest.mark.parametrize(
    ("content", "mode", "message"),
    [
        (None, 0o600, "no cluster key"),
        (base64.b64encode(bytes(32)), 0o644, "mode 0644 lets others read it"),
        (b"not base64 !!", 0o600, "not base64"),
        (base64.b64encode(bytes(16)), 0o600, "must be 256 bits, not 128"),
    ],
)
def test_a_bad_key_file_is_refused_naming_the_file(tmp_path, content, mode, message):
    path = tmp_path / "raft.key"
    if content is not None:
        path.write_bytes(content)
        os.chmod(path, mode)
    with pytest.raises(keyfile.KeyFileError, match=message) as error:
        keyfile.load(str(path))
    assert str(path) in str(error.value)


def test_the_operator_command_writes_a_loadable_key_once(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "raft.key"
    command = [sys.executable, "-m", "vaultd", "operator", "raft-key", str(path)]
    first = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0 and "Success!" in first.stdout
    assert len(keyfile.load(str(path))) == 32
    second = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert second.returncode == 1 and "exists" in second.stderr
