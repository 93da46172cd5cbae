"""Generations and the CURRENT file that switches between them.

    <data>/LOCK                    held by the one process that has the store open
    <data>/CURRENT                 "gen-0000000007\\n" + crc32 of that name in hex; replaced atomically
    <data>/gen-0000000007/         the live generation: segments, hints, compaction manifests
    <data>/gen-0000000008.tmp/     a snapshot being installed; removed at open

A snapshot install builds a whole new generation, then switches CURRENT (write tmp, fsync, rename, fsync
the data dir): a crash at any step leaves either the old or the new generation current, whole.
"""

import os
import zlib

from .errors import CorruptionError
from .fileops import OsFileOps

CURRENT = "CURRENT"
LOCK = "LOCK"
_prefix = "gen-"


def generation_name(number: int) -> str:
    return f"{_prefix}{number:010d}"


def generation_number(name: str) -> int | None:
    if not name.startswith(_prefix) or not name[len(_prefix) :].isdigit():
        return None
    return int(name[len(_prefix) :])


def write_durably(fileops: OsFileOps, path: str, data: bytes) -> None:
    """Create `path` (replacing a leftover), write `data` and fsync it. The caller renames and fsyncs the dir."""
    if fileops.exists(path):
        fileops.unlink(path)
    fd = fileops.open_new(path)
    try:
        fileops.write(fd, data)
        fileops.fsync(fd)
    finally:
        fileops.close(fd)


def write_atomically(fileops: OsFileOps, directory: str, name: str, data: bytes) -> None:
    """Write tmp, fsync, rename over `name`, fsync the directory."""
    path = os.path.join(directory, name)
    write_durably(fileops, path + ".tmp", data)
    fileops.rename(path + ".tmp", path)
    fileops.fsync_dir(directory)


def write_current(fileops: OsFileOps, directory: str, number: int) -> None:
    name = generation_name(number)
    write_atomically(fileops, directory, CURRENT, f"{name}\n{zlib.crc32(name.encode()):08x}\n".encode())


def read_current(fileops: OsFileOps, directory: str) -> int | None:
    """The current generation's number; None for a fresh data dir. Refuses a damaged CURRENT."""
    path = os.path.join(directory, CURRENT)
    if not fileops.exists(path):
        # A first open that crashed before writing CURRENT leaves only empty generations: still fresh.
        for name in fileops.listdir(directory):
            if generation_number(name) is not None and fileops.listdir(os.path.join(directory, name)):
                raise CorruptionError(path, 0, f"CURRENT is missing but {name} holds data")
        return None
    text = fileops.read_file(path)
    lines = text.split(b"\n")
    try:
        name, crc = lines[0].decode(), int(lines[1], 16)
    except (IndexError, ValueError, UnicodeDecodeError):
        raise CorruptionError(path, 0, "CURRENT is not a generation name and checksum") from None
    number = generation_number(name)
    if number is None or zlib.crc32(name.encode()) != crc or lines[2:] != [b""]:
        raise CorruptionError(path, 0, "CURRENT fails its checksum")
    if not fileops.isdir(os.path.join(directory, name)):
        raise CorruptionError(path, 0, f"CURRENT names {name}, which does not exist")
    return number


def open_current(fileops: OsFileOps, directory: str) -> int:
    """The current generation, created on a fresh data dir; every other generation is removed."""
    number = read_current(fileops, directory)
    if number is None:
        number = 1
        if not fileops.isdir(os.path.join(directory, generation_name(number))):
            fileops.mkdir(os.path.join(directory, generation_name(number)))
        fileops.fsync_dir(directory)
        write_current(fileops, directory, number)
    remove_other_generations(fileops, directory, keep=number)
    return number


def remove_other_generations(fileops: OsFileOps, directory: str, keep: int) -> None:
    removed = False
    for name in fileops.listdir(directory):
        path = os.path.join(directory, name)
        stem = name.removesuffix(".tmp")
        if name == CURRENT + ".tmp":
            fileops.unlink(path)
            removed = True
        elif generation_number(stem) is not None and name != generation_name(keep):
            fileops.remove_tree(path)
            removed = True
    if removed:
        fileops.fsync_dir(directory)
