"""The seam through which the engine touches the disk.

Production uses `OsFileOps`. Tests swap in a fault-injecting implementation with the same methods to simulate
power loss, torn writes, ENOSPC and failing fsyncs. Every write, fsync, rename and unlink of the engine goes
through here; nothing in `storage/` calls `os` for file I/O directly.
"""

import errno
import fcntl
import os

from .errors import StoreLocked


class OsFileOps:
    """File operations on the real file system."""

    def open_new(self, path: str) -> int:
        """Create `path` for writing; it must not exist."""
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)

    def open_read(self, path: str) -> int:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def open_rw(self, path: str) -> int:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)

    def dup(self, fd: int) -> int:
        return os.dup(fd)

    def write(self, fd: int, data: bytes) -> None:
        """Write all of `data`, looping over short writes; raises OSError (ENOSPC, EIO) as the kernel does."""
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]

    def pread(self, fd: int, length: int, offset: int) -> bytes:
        return os.pread(fd, length, offset)

    def size(self, fd: int) -> int:
        return os.fstat(fd).st_size

    def path_size(self, path: str) -> int:
        return os.path.getsize(path)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def fdatasync(self, fd: int) -> None:
        os.fdatasync(fd)

    def ftruncate(self, fd: int, length: int) -> None:
        os.ftruncate(fd, length)

    def close(self, fd: int) -> None:
        os.close(fd)

    def read_file(self, path: str) -> bytes:
        with open(path, "rb") as file:
            return file.read()

    def rename(self, source: str, target: str) -> None:
        os.rename(source, target)

    def unlink(self, path: str) -> None:
        os.unlink(path)

    def mkdir(self, path: str) -> None:
        os.mkdir(path, 0o700)

    def rmdir(self, path: str) -> None:
        os.rmdir(path)

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(path))

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def isdir(self, path: str) -> bool:
        return os.path.isdir(path)

    def fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def lock(self, path: str) -> int:
        """Take an exclusive lock on `path`, or raise StoreLocked. Returns the handle for `unlock`."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise StoreLocked(f"{path} is held by another process or handle") from None
            raise
        return fd

    def unlock(self, handle: int) -> None:
        os.close(handle)

    def remove_tree(self, path: str) -> None:
        """Remove a directory of plain files (a generation), then the directory itself."""
        for name in self.listdir(path):
            self.unlink(os.path.join(path, name))
        self.rmdir(path)
