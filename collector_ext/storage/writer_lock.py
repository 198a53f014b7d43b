"""One receiver per writer id: a lock held for the receiver's life on its WAL directory and its writer id.

Two receivers with the same writer id on one dataset (a DaemonSet whose pods share a hostname-derived id,
a copied config) would overwrite each other's Parquet files and delete each other's WAL segments. So a
receiver takes two `flock` locks before it reads or writes anything, and holds them until it exits
(the kernel drops them when the process dies, even by kill -9, so a crash never leaves a stale lock):

- `<data-dir>/_locks/<writer-id>.lock`: the writer id inside the dataset (also when the WAL directories
  differ, `--wal-dir`);
- `<wal-dir>/LOCK`: the write-ahead log (one owner, whatever the writer id).

A second receiver finds a lock taken and refuses to start with one line naming the holder (pid and host
written in the lock file). `flock` is advisory and per host: on a network file system shared by several
hosts it may not exclude a receiver on another node; give every receiver its own writer id there.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from collector_ext.storage.dataset_files import SHARED_FILE_MODE, make_shared_dirs
from collector_ext.user_error import UserError

LOCKS_DIR = "_locks"


class WriterIdInUse(UserError):
    """Another running receiver holds this writer id or this WAL directory."""


class WriterLock:
    def __init__(self, wal_dir: Path, data_dir: Path, writer_id: str) -> None:
        self.paths = [Path(data_dir) / LOCKS_DIR / f"{writer_id}.lock", Path(wal_dir) / "LOCK"]
        self.writer_id = writer_id
        self.data_dir = Path(data_dir)
        self._fds: list[int] = []

    def acquire(self) -> WriterLock:
        """Take both locks (or none): raises WriterIdInUse when another receiver holds one."""
        self.data_dir.mkdir(parents=True, exist_ok=True)  # first: an error names the data directory itself
        try:
            for path in self.paths:
                self._fds.append(self._take(path))
        except BaseException:
            self.release()
            raise
        return self

    def _take(self, path: Path) -> int:
        if path.parent.parent == self.data_dir:  # <data-dir>/_locks: shared by the dataset's writers
            make_shared_dirs(path.parent)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, SHARED_FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise WriterIdInUse(
                f"writer id {self.writer_id!r} is in use on {self.data_dir}: another receiver ({holder}) holds "
                f"{path}; give every receiver its own --writer-id and --wal-dir"
            ) from None
        except OSError:
            os.close(fd)
            raise
        os.fchmod(fd, SHARED_FILE_MODE)  # another user of the dataset's group may take it next (umask aside)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        return fd

    def release(self) -> None:
        for fd in self._fds:
            os.close(fd)  # closing the descriptor drops its flock
        self._fds = []

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
