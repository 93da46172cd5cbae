"""A fault-injecting, in-memory file system with the methods of `storage.fileops.OsFileOps`.

It keeps, for every file, the bytes written and the bytes made durable by the last fsync, and for every
directory, its entries and the entries made durable by the last directory fsync. `power_loss(rng)` turns
it into what a disk could hold after the power failed: each directory reverts to its durable entries
(creates, renames and unlinks that were not followed by a directory fsync are undone), and each file keeps
its durable bytes plus a random prefix of the bytes written since (a torn write).

`crash_after(n)` makes the n-th mutating operation from now raise SimulatedCrash, and every operation after
it too, as if the process died there: nothing the store does afterwards reaches the disk. `inject(op,
errno)` makes the next `op` fail with that errno (a short write first, for `write`). It is the only way to
test a missing fsync: kill -9 cannot, since the page cache survives a process kill.
"""

import errno as errno_codes
import random

from storage.errors import StoreLocked


class SimulatedCrash(BaseException):
    """The simulated process died. A BaseException, so that no `except OSError` in the store can swallow it."""


class _File:
    def __init__(self) -> None:
        self.data = bytearray()
        self.durable = b""


class _Dir:
    def __init__(self) -> None:
        self.entries: dict[str, object] = {}
        self.durable: dict[str, object] = {}


class SimulatedDisk:
    def __init__(self) -> None:
        self.root = _Dir()
        self.fds: dict[int, list] = {}  # fd -> [node, position]
        self.next_fd = 3
        self.locks: set[str] = set()
        self.countdown: int | None = None
        self.crashed = False
        self.faults: dict[str, int] = {}
        self.mutations = 0
        self.sync_calls = 0

    # --- fault control ------------------------------------------------------------------------------------

    def crash_after(self, operations: int) -> None:
        self.countdown = operations

    def inject(self, operation: str, code: int) -> None:
        self.faults[operation] = code

    def power_loss(self, rng: random.Random) -> None:
        """Keep only what was durable (plus torn tails of un-fsynced appends); forget open files and locks."""
        seen = set()
        self._revert(self.root, rng, seen)
        self.fds.clear()
        self.locks.clear()
        self.countdown = None
        self.crashed = False
        self.faults.clear()

    def _revert(self, directory: _Dir, rng: random.Random, seen: set) -> None:
        directory.entries = dict(directory.durable)
        for node in directory.entries.values():
            if id(node) in seen:
                continue
            seen.add(id(node))
            if isinstance(node, _Dir):
                self._revert(node, rng, seen)
            elif node.data.startswith(node.durable):
                pending = len(node.data) - len(node.durable)
                node.data = bytearray(node.durable) + node.data[len(node.durable) :][: rng.randint(0, pending)]
            else:
                node.data = bytearray(rng.choice([node.durable, bytes(node.data)]))
            if isinstance(node, _File):
                node.durable = bytes(node.data)

    def _step(self, operation: str) -> None:
        if self.crashed:
            raise SimulatedCrash(operation)
        self.mutations += 1
        if self.countdown is not None:
            self.countdown -= 1
            if self.countdown < 0:
                self.crashed = True
                raise SimulatedCrash(operation)

    def _check(self) -> None:
        if self.crashed:
            raise SimulatedCrash("read")

    def _fault(self, operation: str) -> int | None:
        return self.faults.pop(operation, None)

    # --- paths --------------------------------------------------------------------------------------------

    def _parent(self, path: str) -> tuple[_Dir, str]:
        parts = [part for part in path.split("/") if part]
        node = self.root
        for part in parts[:-1]:
            node = node.entries.get(part)
            if not isinstance(node, _Dir):
                raise FileNotFoundError(errno_codes.ENOENT, "no such directory", path)
        return node, parts[-1]

    def _lookup(self, path: str):
        parts = [part for part in path.split("/") if part]
        if not parts:
            return self.root
        directory, name = self._parent(path)
        node = directory.entries.get(name)
        if node is None:
            raise FileNotFoundError(errno_codes.ENOENT, "no such file", path)
        return node

    def _open(self, node) -> int:
        fd = self.next_fd
        self.next_fd += 1
        self.fds[fd] = [node, 0]
        return fd

    # --- the FileOps methods ------------------------------------------------------------------------------

    def open_new(self, path: str) -> int:
        self._step("open_new")
        directory, name = self._parent(path)
        if name in directory.entries:
            raise FileExistsError(errno_codes.EEXIST, "exists", path)
        node = _File()
        directory.entries[name] = node
        return self._open(node)

    def open_read(self, path: str) -> int:
        self._check()
        return self._open(self._lookup(path))

    open_rw = open_read

    def dup(self, fd: int) -> int:
        self._check()
        return self._open(self.fds[fd][0])

    def write(self, fd: int, data: bytes) -> None:
        self._step("write")
        entry = self.fds[fd]
        node, position = entry
        code = self._fault("write")
        if code is not None:
            data = bytes(data)[: len(data) // 2]
        node.data[position : position + len(data)] = data
        entry[1] = position + len(data)
        if code is not None:
            raise OSError(code, errno_codes.errorcode[code])

    def pread(self, fd: int, length: int, offset: int) -> bytes:
        self._check()
        return bytes(self.fds[fd][0].data[offset : offset + length])

    def size(self, fd: int) -> int:
        self._check()
        return len(self.fds[fd][0].data)

    def path_size(self, path: str) -> int:
        self._check()
        return len(self._lookup(path).data)

    def fsync(self, fd: int) -> None:
        self._step("fsync")
        self.sync_calls += 1
        code = self._fault("fsync")
        if code is not None:
            raise OSError(code, errno_codes.errorcode[code])
        node = self.fds[fd][0]
        node.durable = bytes(node.data)

    fdatasync = fsync

    def ftruncate(self, fd: int, length: int) -> None:
        self._step("ftruncate")
        node = self.fds[fd][0]
        del node.data[length:]

    def close(self, fd: int) -> None:
        self.fds.pop(fd, None)

    def read_file(self, path: str) -> bytes:
        self._check()
        return bytes(self._lookup(path).data)

    def rename(self, source: str, target: str) -> None:
        self._step("rename")
        source_dir, source_name = self._parent(source)
        target_dir, target_name = self._parent(target)
        node = source_dir.entries.pop(source_name)
        target_dir.entries[target_name] = node

    def unlink(self, path: str) -> None:
        self._step("unlink")
        directory, name = self._parent(path)
        if not isinstance(directory.entries.get(name), _File):
            raise FileNotFoundError(errno_codes.ENOENT, "no such file", path)
        del directory.entries[name]

    def mkdir(self, path: str) -> None:
        self._step("mkdir")
        directory, name = self._parent(path)
        if name in directory.entries:
            raise FileExistsError(errno_codes.EEXIST, "exists", path)
        directory.entries[name] = _Dir()

    def rmdir(self, path: str) -> None:
        self._step("rmdir")
        directory, name = self._parent(path)
        node = directory.entries.get(name)
        if not isinstance(node, _Dir) or node.entries:
            raise OSError(errno_codes.ENOTEMPTY, "not an empty directory", path)
        del directory.entries[name]

    def listdir(self, path: str) -> list[str]:
        self._check()
        return sorted(self._lookup(path).entries)

    def exists(self, path: str) -> bool:
        self._check()
        try:
            self._lookup(path)
        except FileNotFoundError:
            return False
        return True

    def isdir(self, path: str) -> bool:
        return self.exists(path) and isinstance(self._lookup(path), _Dir)

    def fsync_dir(self, path: str) -> None:
        self._step("fsync_dir")
        self.sync_calls += 1
        node = self._lookup(path)
        node.durable = dict(node.entries)

    def lock(self, path: str) -> int:
        self._check()
        if path in self.locks:
            raise StoreLocked(f"{path} is held")
        self.locks.add(path)
        return hash(path)

    def unlock(self, handle: int) -> None:
        self.locks = {path for path in self.locks if hash(path) != handle}

    def remove_tree(self, path: str) -> None:
        for name in self.listdir(path):
            self.unlink(f"{path}/{name}")
        self.rmdir(path)
