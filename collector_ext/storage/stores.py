"""Where a dataset lives: a local directory, or a prefix of an S3 bucket (any S3 API).

`open_store(location)` takes what `--data-dir` / `--data` says: a path, or `s3://BUCKET/PREFIX`. Both stores
offer the few operations the dataset's writers, the compactor and the analyzer need, with the same promise:
a file is visible whole or not at all.

- `LocalStore`: temporary name of the writer, fsync, rename, fsync of the directory; group-writable setgid
  directories and 0664 files (dataset_files.py explains why).
- `ObjectStore`: pyarrow's S3FileSystem (Apache Arrow's C++ client on the AWS SDK). Chosen over boto3 and
  fsspec/s3fs because the receiver and the analyzer already depend on pyarrow (no new dependency, no second
  HTTP stack). The AWS SDK under it reads `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` /
  `AWS_SESSION_TOKEN`, `AWS_REGION`, profiles, IRSA web identity and instance metadata (its default
  credential chain); `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` are read by Arrow only when a filesystem
  is made from a URI (apache/arrow cpp/src/arrow/filesystem/s3fs.cc `kAwsEndpointUrlEnvVar`, in
  `S3Options::FromUri`), so `s3_filesystem` passes them itself, with the same precedence.
  A file is serialized in memory first and handed to the stream in ONE write: with `allow_delayed_open`
  a file under 10 MiB is one PutObject at close (s3fs.cc `kMultiPartUploadThresholdSize`,
  `UploadUsingSingleRequest`); a larger one is a multipart upload that S3 shows only once completed, and
  a failed part makes the close fail without completing it (s3fs.cc `CleanupIfFailed`). Either way an
  object is never half there. PUT is idempotent on a key: writing the same rows again to the same name
  (a retry after an answer that was lost) replaces them, never doubles them.

Errors: a store that cannot be reached raises OSError (pyarrow's S3 errors carry no errno); a file that is
there but cannot be parsed raises pyarrow.ArrowInvalid. `read_bytes` then parse keeps the two apart, so
a network failure is never mistaken for a damaged file.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pyarrow as pa
import pyarrow.fs as pafs

from collector_ext.user_error import UserError

S3_SCHEME = "s3://"
# A dataset file: <table>/date=YYYY-MM-DD/<name>.parquet (relative to the dataset root)
FILE_RE = re.compile(r"^(?P<table>[a-z_]+)/date=(?P<date>\d{4}-\d{2}-\d{2})/(?P<name>[^/]+\.parquet)$")
SHARED_DIR_MODE = 0o2775
SHARED_FILE_MODE = 0o664
# Short timeouts: an unreachable bucket must surface as a failed write (rows kept, retried with back-off,
# back-pressure) within seconds, not hang the flusher on the SDK's defaults.
S3_CONNECT_TIMEOUT_S = 3.0
S3_REQUEST_TIMEOUT_S = 30.0
S3_ATTEMPTS = 3


def is_object_store(location: str | os.PathLike[str]) -> bool:
    return str(location).startswith(S3_SCHEME)


@dataclass(frozen=True, slots=True)
class StoredFile:
    """One Parquet file of the dataset: where it is (relative to the root) and its size."""

    relative: str  # <table>/date=YYYY-MM-DD/<name>.parquet
    table: str
    date: str
    name: str
    size: int


class Store(Protocol):
    """What the dataset's writers, the compactor and the analyzer do with a dataset location."""

    location: str  # as the user wrote it (a path or s3://bucket/prefix): named in messages

    def describe(self, relative: str) -> str: ...
    def list_files(self, tables: Iterable[str], dates: Iterable[str] | None = None) -> list[StoredFile]: ...
    def list_dates(self, table: str) -> list[str]: ...
    def put(self, relative: str, data: pa.Buffer | bytes) -> None: ...
    def read_bytes(self, relative: str) -> pa.Buffer: ...
    def exists(self, relative: str) -> bool: ...
    def delete(self, relative: str) -> None: ...
    def move(self, relative: str, to: str) -> None: ...
    def remove_partition(self, table: str, date: str) -> None: ...


def _parse(relative: str, size: int) -> StoredFile | None:
    match = FILE_RE.match(relative)
    if match is None:
        return None
    return StoredFile(relative, match["table"], match["date"], match["name"], size)


def make_shared_dirs(path: Path) -> None:
    """Create `path` and its missing parents as group-writable setgid directories (see dataset_files.py).

    Only directories this call creates are chmod-ed: one another writer created is left as it is (changing
    a directory owned by another user would fail, and it already has the mode)."""
    if path.is_dir():
        return
    make_shared_dirs(path.parent)
    try:
        path.mkdir()
    except FileExistsError:
        return  # another writer created it meanwhile
    os.chmod(path, SHARED_DIR_MODE)  # mkdir's mode is masked by the umask; chmod is not


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in `path` durable (the directory entry itself)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStore:
    """A dataset directory on a local (or shared, ReadWriteMany) file system."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.location = str(root)

    def path(self, relative: str) -> Path:
        return self.root / relative

    def describe(self, relative: str) -> str:
        return str(self.root / relative)

    def list_files(self, tables: Iterable[str], dates: Iterable[str] | None = None) -> list[StoredFile]:
        found = []
        partitions = ["date=*"] if dates is None else [f"date={d}" for d in sorted(set(dates))]
        for table in tables:
            for partition in partitions:
                for path in (self.root / table).glob(f"{partition}/*.parquet"):
                    try:
                        size = path.stat().st_size
                    except FileNotFoundError:
                        continue  # removed meanwhile (compaction, retention)
                    parsed = _parse(path.relative_to(self.root).as_posix(), size)
                    if parsed is not None:
                        found.append(parsed)
        return sorted(found, key=lambda f: f.relative)

    def list_dates(self, table: str) -> list[str]:
        return sorted(p.name[5:] for p in (self.root / table).glob("date=*") if p.is_dir())

    def put(self, relative: str, data: pa.Buffer | bytes) -> None:
        """Atomically: a temporary name in the same directory, fsync, rename, fsync of the directory."""
        final = self.root / relative
        make_shared_dirs(final.parent)
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(memoryview(data))
                os.fchmod(handle.fileno(), SHARED_FILE_MODE)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        fsync_dir(final.parent)

    def read_bytes(self, relative: str) -> pa.Buffer:
        return pa.py_buffer((self.root / relative).read_bytes())

    def exists(self, relative: str) -> bool:
        return (self.root / relative).exists()

    def delete(self, relative: str) -> None:
        path = self.root / relative
        path.unlink(missing_ok=True)

    def move(self, relative: str, to: str) -> None:
        source, target = self.root / relative, self.root / to
        make_shared_dirs(target.parent)
        source.replace(target)
        fsync_dir(source.parent)

    def remove_partition(self, table: str, date: str) -> None:
        directory = self.root / table / f"date={date}"
        for path in directory.glob("*"):
            if path.is_file():
                path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # a writer added a file meanwhile (a late span): the next run removes it
            directory.rmdir()


def s3_filesystem() -> pafs.S3FileSystem:
    """pyarrow's S3 client configured from the standard AWS variables (see the module docstring).

    The endpoint variables are read here, with the precedence of Arrow's own `S3Options::FromUri`
    (s3fs.cc: AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL): the S3FileSystem constructor does not read them."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
    return pafs.S3FileSystem(
        endpoint_override=endpoint,
        allow_delayed_open=True,  # small files: one PutObject at close, nothing uploaded before
        connect_timeout=S3_CONNECT_TIMEOUT_S,
        request_timeout=S3_REQUEST_TIMEOUT_S,
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=S3_ATTEMPTS),
    )


class ObjectStore:
    """A dataset under `s3://BUCKET/PREFIX`: objects `<prefix>/<table>/date=YYYY-MM-DD/<name>.parquet`."""

    def __init__(self, location: str, filesystem: pafs.FileSystem | None = None) -> None:
        rest = location[len(S3_SCHEME) :].strip("/")
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise UserError(f"{location!r} names no bucket: use s3://BUCKET/PREFIX")
        self.location = location
        self.bucket = bucket
        self.root = f"{bucket}/{prefix}".rstrip("/")
        self.fs = filesystem if filesystem is not None else s3_filesystem()

    def key(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    def describe(self, relative: str) -> str:
        return f"{S3_SCHEME}{self.root}/{relative}"

    def _listing(self, directory: str) -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(self.key(directory), recursive=True, allow_not_found=True)
        return self.fs.get_file_info(selector)

    def list_files(self, tables: Iterable[str], dates: Iterable[str] | None = None) -> list[StoredFile]:
        found = []
        start = len(self.root) + 1
        for table in tables:
            directories = [table] if dates is None else [f"{table}/date={d}" for d in sorted(set(dates))]
            for directory in directories:
                for info in self._listing(directory):
                    if info.type == pafs.FileType.File:
                        parsed = _parse(info.path[start:], info.size)
                        if parsed is not None:
                            found.append(parsed)
        return sorted(found, key=lambda f: f.relative)

    def list_dates(self, table: str) -> list[str]:
        return sorted({f.date for f in self.list_files([table])})

    def put(self, relative: str, data: pa.Buffer | bytes) -> None:
        # ONE write of the whole file, then close (see the module docstring): never a partial object
        with self.fs.open_output_stream(self.key(relative)) as out:
            out.write(data)

    def read_bytes(self, relative: str) -> pa.Buffer:
        with self.fs.open_input_stream(self.key(relative)) as stream:
            return stream.read_buffer()

    def exists(self, relative: str) -> bool:
        return self.fs.get_file_info(self.key(relative)).type == pafs.FileType.File

    def delete(self, relative: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(self.key(relative))

    def move(self, relative: str, to: str) -> None:
        self.fs.copy_file(self.key(relative), self.key(to))  # S3 has no rename: copy, then delete
        self.delete(relative)

    def remove_partition(self, table: str, date: str) -> None:
        for info in self._listing(f"{table}/date={date}"):
            if info.type == pafs.FileType.File:
                self.delete(info.path[len(self.root) + 1 :])


def open_store(location: str | os.PathLike[str]) -> LocalStore | ObjectStore:
    """The store of a dataset location: `s3://BUCKET/PREFIX`, else a local path."""
    text = str(location)
    if is_object_store(text):
        return ObjectStore(text)
    return LocalStore(Path(text))
