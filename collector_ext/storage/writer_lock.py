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

On an object store (`s3://`) there is no flock: the writer id is a **lease**, an object
`<prefix>/_locks/<writer-id>.lock` holding the holder (pid, host), a random token and the time it was last
renewed, renewed every LEASE_SECONDS / 3 by a thread. What that detects and what it does not:

- detected: a second receiver starting with a writer id whose holder renewed its lease within
  LEASE_SECONDS refuses to start, naming the holder (the common mistake: a copied config, two pods with
  one id); a receiver that finds, when renewing, that another one wrote the lease logs an error each time
  (`writer id taken over`) and counts it (`conflicts`);
- a restart is not a second receiver: the lease names the WAL directory's own id (`<wal-dir>/ID`, made
  once), and a receiver that holds that WAL directory's flock takes over a lease its WAL wrote (the
  process before it is gone: it would hold the flock otherwise), so a receiver killed -9 restarts at once;
- not detected: two receivers starting within the same instant (S3 has no compare-and-swap this client
  can use: read, write, read back narrows the window, does not close it); a holder that could not reach
  the bucket for longer than LEASE_SECONDS (a second receiver may then start; the first one notices at
  its next renewal); clocks further apart than LEASE_SECONDS. Two receivers under one writer id can
  overwrite each other's files: give every receiver its own id (the pod name, the default).
The WAL directory is local even then, and keeps its flock.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import socket
import threading
import time
from pathlib import Path

import structlog

from collector_ext.storage.stores import SHARED_FILE_MODE, ObjectStore, is_object_store, make_shared_dirs
from collector_ext.user_error import UserError

log = structlog.get_logger("agentmeter.lock")

LOCKS_DIR = "_locks"
LEASE_SECONDS = 60.0


class WriterIdInUse(UserError):
    """Another running receiver holds this writer id or this WAL directory."""


class ObjectLease:
    """A lease object on an object store (see the module docstring for what it detects)."""

    def __init__(
        self, store: ObjectStore, name: str, what: str, lease_seconds: float = LEASE_SECONDS, owner: str | None = None
    ) -> None:
        self.store = store
        self.owner = owner  # who may take the lease over at once (the WAL directory's id); None: nobody
        self.relative = f"{LOCKS_DIR}/{name}.lock"
        self.what = what  # "writer id 'w1'", "the compactor": named in messages
        self.lease_seconds = lease_seconds
        self.token = secrets.token_hex(8)
        self.holder = f"pid {os.getpid()} on {socket.gethostname()}"
        self.conflicts = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _read(self) -> dict | None:
        try:
            return json.loads(bytes(self.store.read_bytes(self.relative)))
        except FileNotFoundError:
            return None
        except ValueError:
            return None  # not ours to understand: taken over

    def _write(self) -> None:
        doc = {"holder": self.holder, "token": self.token, "owner": self.owner, "renewed_at": time.time()}
        self.store.put(self.relative, json.dumps(doc).encode())

    def _held_by_another(self, doc: dict | None) -> bool:
        return (
            doc is not None
            and doc.get("token") != self.token
            and (self.owner is None or doc.get("owner") != self.owner)
            and time.time() - float(doc.get("renewed_at", 0)) < self.lease_seconds
        )

    def acquire(self) -> ObjectLease:
        current = self._read()  # an unreachable bucket raises OSError here (the receiver retries: server.py)
        if self._held_by_another(current):
            assert current is not None
            raise WriterIdInUse(
                f"{self.what} is in use on {self.store.location}: another process ({current.get('holder')}) "
                f"renewed {self.store.describe(self.relative)} {time.time() - float(current['renewed_at']):.0f} s "
                "ago; give every receiver its own --writer-id"
            )
        self._write()
        if self._read() is None or (self._read() or {}).get("token") != self.token:  # read back: a race lost
            raise WriterIdInUse(f"{self.what} was taken by another process at the same moment on {self.store.location}")
        self._thread = threading.Thread(target=self._renew_loop, name="lease", daemon=True)
        self._thread.start()
        return self

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.lease_seconds / 3):
            try:
                current = self._read()
                if self._held_by_another(current):
                    self.conflicts += 1
                    log.error(
                        f"{self.what} taken over: another process renewed its lease; two writers under one id "
                        "can overwrite each other's files",
                        other=(current or {}).get("holder"),
                    )
                self._write()
            except OSError as err:  # the bucket is unreachable: the writer's own retries say so too
                log.warning("lease not renewed: the object store cannot be reached", error=str(err))

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        try:
            if (self._read() or {}).get("token") == self.token:
                self.store.delete(self.relative)
        except OSError:
            pass  # unreachable: the lease runs out by itself


class WriterLock:
    def __init__(self, wal_dir: Path, data_dir: Path | str, writer_id: str) -> None:
        self.object_store = is_object_store(data_dir)
        self.paths = [Path(wal_dir) / "LOCK"]
        if not self.object_store:
            self.paths.insert(0, Path(data_dir) / LOCKS_DIR / f"{writer_id}.lock")
        self.writer_id = writer_id
        self.data_dir = Path(data_dir) if not self.object_store else None
        self.location = str(data_dir)
        self.lease: ObjectLease | None = None
        self._fds: list[int] = []

    def acquire(self, lease: bool = True) -> WriterLock:
        """Take both locks (or none): raises WriterIdInUse when another receiver holds one. `lease=False`: only
        the local flocks; the object store's lease later (`acquire_lease`, before anything is written there)."""
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)  # first: an error names the data directory itself
        try:
            for path in self.paths:
                self._fds.append(self._take(path))
            if lease:
                self.acquire_lease()
        except BaseException:
            self.release()
            raise
        return self

    def acquire_lease(self) -> None:
        """On an object store, the writer id's lease (no-op when held, or locally). Taken after the WAL's flock:
        holding it proves the WAL's last owner is gone. Raises OSError while the store cannot be reached,
        WriterIdInUse when another receiver holds the id."""
        if self.object_store and self.lease is None:
            lease = ObjectLease(
                ObjectStore(self.location), self.writer_id, f"writer id {self.writer_id!r}", owner=self._wal_id()
            )
            self.lease = lease.acquire()

    def _wal_id(self) -> str:
        """The WAL directory's own id, made once: names it in the writer id's lease."""
        path = self.paths[-1].parent / "ID"
        if not path.exists():
            path.write_text(secrets.token_hex(16) + "\n")
        return path.read_text().strip()

    def _take(self, path: Path) -> int:
        if self.data_dir is not None and path.parent.parent == self.data_dir:  # <data-dir>/_locks: shared
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
                f"writer id {self.writer_id!r} is in use on {self.location}: another receiver ({holder}) holds "
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
        if self.lease is not None:
            self.lease.release()
            self.lease = None
        for fd in self._fds:
            os.close(fd)  # closing the descriptor drops its flock
        self._fds = []

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class DatasetLock:
    """One process of a kind per dataset (the compactor): a flock on `<root>/_locks/<name>.lock` locally, a
    lease object on an object store (see the module docstring for what a lease detects)."""

    def __init__(self, location: Path | str, name: str, what: str) -> None:
        self.location = str(location)
        self.name = name
        self.what = what
        self._fd: int | None = None
        self._lease: ObjectLease | None = None

    def __enter__(self) -> DatasetLock:
        if is_object_store(self.location):
            self._lease = ObjectLease(ObjectStore(self.location), self.name, self.what).acquire()
            return self
        path = Path(self.location) / LOCKS_DIR / f"{self.name}.lock"
        make_shared_dirs(path.parent)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, SHARED_FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise WriterIdInUse(f"{self.what} is already running on {self.location} ({holder})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lease is not None:
            self._lease.release()
            self._lease = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
