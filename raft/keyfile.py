"""The cluster key: 256 bits, base64 in a file of mode 0600, shared by every node of one cluster.

pysyncobj unpickles whatever its peers send (reference/pysyncobj.md §1.2), so a node never joins Raft without
this key; `vaultd operator raft-key` writes one. Loading refuses, with one line naming the file: a missing
file, a file other users may read or write, content that is not base64, and a key that is not 32 bytes.
"""

import base64
import binascii
import os
import secrets
import stat

key_bytes = 32


class KeyFileError(Exception):
    """The cluster key file is missing, exposed or malformed. The message names the file and the problem."""


def generate(path: str) -> None:
    """Write a fresh key to `path` (which must not exist), created 0600 from the start."""
    key = base64.b64encode(secrets.token_bytes(key_bytes)) + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)


def load(path: str) -> bytes:
    """The 32-byte cluster key from `path`, after checking its mode and form."""
    try:
        info = os.stat(path)
        with open(path, "rb") as file:
            text = file.read()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no cluster key; create one with `vaultd operator raft-key {path}`") from None
    except OSError as error:
        raise KeyFileError(f"{path}: cannot read the cluster key: {error.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise KeyFileError(f"{path}: the cluster key must be a regular file")
    if info.st_mode & 0o077:
        raise KeyFileError(f"{path}: mode {stat.S_IMODE(info.st_mode):04o} lets others read it; chmod 600 {path}")
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError(f"{path}: the cluster key is not base64") from None
    if len(key) != key_bytes:
        raise KeyFileError(f"{path}: the cluster key must be {key_bytes * 8} bits, not {len(key) * 8}")
    return key
