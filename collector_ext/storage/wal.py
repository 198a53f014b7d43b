"""The write-ahead log: nothing is acknowledged before it is here.

A WAL is a directory of segment files `<seq>.wal`, seq increasing. The framing (version 2):

    segment := header record*
    header  := "AMWAL2\\n" | blob length (u32 LE) | crc32 of blob (u32 LE) | blob (the caller's, e.g. the
               Parquet sequence number the writer was at when the segment was opened)
    record  := mark "\\xd9AMR" | payload length (u32 LE) | crc32 of payload (u32 LE)
               | crc32 of the 12 bytes before (u32 LE) | payload

Every record starts with a sync mark and a header that checks itself, so a reader can tell a record
boundary from payload bytes and find the next record after damage (the way Tempo's and the Collector's
logs frame theirs). Reading a segment:

- a record whose header or payload fails its crc is damage: the reader logs it, counts it
  (`corrupt_records`) and resynchronises on the next sync mark whose header checks out, so every intact
  record after it is still replayed (a flipped bit or a bad length costs that record, not the segment);
- what is left at the end of a segment without a whole record (a header cut short, a payload running past
  the end, zeros) is a torn tail: a write that never completed, never acknowledged, ignored;
- a damaged segment header loses no record either: the records are found by their marks, and
  `header(seq)` answers None, so that the caller does not trust what it said.

Writing: a record is written with as many `write` calls as the kernel needs. If one fails (ENOSPC, EFBIG,
EIO, ...) the segment is cut back to where the record began, so no partial record stays in it; if even
that fails the segment is closed and the next append opens a new one. Either way the append raises
WalError (with the errno) and the request is not acknowledged. A segment file that cannot be opened
(EMFILE, ENOSPC) raises WalError too.

fsync policy: "always" makes each append durable before it returns; concurrent appenders share one fsync
(group commit). "interval" fsyncs at most every `interval_seconds` (a `kill -9` loses nothing, since
written data is in the page cache; a power cut may lose the last interval). "never" leaves it to the OS.
A failed fsync is not retried as if nothing happened (Linux may drop the dirty pages and report success
the next time): the segment is marked broken, every append waiting on it fails, and the next append opens
a new segment.

Version 1 segments ("AMWAL1\\n", records `length | crc | payload`, written by receivers before this
framing) are still replayed, up to their first damaged record.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import structlog

from collector_ext.storage.dataset_files import fsync_dir

log = structlog.get_logger("agentmeter.wal")

MAGIC = b"AMWAL2\n"
MAGIC_V1 = b"AMWAL1\n"
RECORD_MARK = b"\xd9AMR"
_SEGMENT_HEADER = struct.Struct("<II")  # blob length, crc32 of the blob
_RECORD_HEADER = struct.Struct("<4sIII")  # mark, payload length, payload crc32, crc32 of the 12 bytes before
_FRAME_V1 = struct.Struct("<II")
SUFFIX = ".wal"


class WalError(OSError):
    """The WAL cannot be written (disk full, no file descriptors, I/O error, permissions); `errno` says which.
    Nothing of the record that failed is acknowledged."""


def record_header(parts: tuple[bytes, ...]) -> bytes:
    """The 16 bytes before a record's payload (the concatenation of `parts`): mark, length, crcs."""
    crc = 0
    for part in parts:
        crc = zlib.crc32(part, crc)
    head = RECORD_MARK + struct.pack("<II", sum(map(len, parts)), crc)
    return head + struct.pack("<I", zlib.crc32(head))


class WriteAheadLog:
    def __init__(
        self,
        directory: Path,
        *,
        segment_bytes: int = 64 * 1024 * 1024,
        fsync: str = "always",
        interval_seconds: float = 0.2,
        segment_header: Callable[[], bytes] = lambda: b"",
    ) -> None:
        if fsync not in ("always", "interval", "never"):
            raise ValueError(f"unknown fsync policy {fsync!r}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self.fsync_policy = fsync
        self.interval_seconds = interval_seconds
        self._segment_header = segment_header
        self._lock = threading.Lock()  # guards the current segment's file and positions
        self._sync_lock = threading.Lock()  # one fsync at a time; waiters find their data already synced
        existing = self.segments()
        self._seq = (existing[-1] + 1) if existing else 1
        self._fd: int | None = None
        self._written = 0  # bytes written to the current segment
        self._current_records = 0  # records in the current segment
        self._synced = 0  # bytes of the current segment known durable
        self._last_sync = time.monotonic()
        self._sizes = {seq: self._path(seq).stat().st_size for seq in existing}  # closed segments on disk
        self._closed_bytes = sum(self._sizes.values())  # kept with _sizes: read without the lock
        self._broken: set[int] = set()  # segments whose fsync failed: nothing waiting on them is durable
        self.corrupt_records = 0  # damaged records skipped by replay (each followed by a resync)

    # -- segments ----------------------------------------------------------------------------------
    def _path(self, seq: int) -> Path:
        return self.directory / f"{seq:012d}{SUFFIX}"

    def segments(self) -> list[int]:
        """Sequence numbers of the segments on disk, oldest first."""
        return sorted(int(p.stem) for p in self.directory.glob(f"*{SUFFIX}") if p.stem.isdigit())

    @property
    def current_seq(self) -> int:
        return self._seq

    @property
    def current_has_records(self) -> bool:
        """Whether the open segment holds a record (rotating it would let them retire)."""
        return self._fd is not None and self._current_records > 0

    @property
    def bytes_on_disk(self) -> int:
        return self._closed_bytes + self._written

    def segment_sizes(self) -> list[tuple[int, int]]:
        """(seq, bytes) of every segment on disk, oldest first, the open one included."""
        with self._lock:
            sizes = sorted(self._sizes.items())
            if self._fd is not None:
                sizes.append((self._seq, self._written))
            return sizes

    def _open_segment(self) -> None:
        blob = self._segment_header()
        path = self._path(self._seq)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            _write_all(fd, MAGIC, _SEGMENT_HEADER.pack(len(blob), zlib.crc32(blob)), blob)
            os.fsync(fd)
            fsync_dir(self.directory)
        except OSError:
            size = os.fstat(fd).st_size
            os.close(fd)
            try:  # a segment that never held a record: nothing to keep
                path.unlink()
            except OSError:  # left behind, holding no record: replay finds none in it, retirement deletes it
                self._sizes[self._seq] = size
                self._closed_bytes += size
                self._seq += 1
            raise
        self._fd = fd
        self._written = os.fstat(fd).st_size
        self._synced = self._written
        self._current_records = 0

    def _close_segment(self) -> None:
        """Under self._lock: make the open segment durable and close it; the next append opens seq + 1.
        A failed fsync marks the segment broken (waiters on it fail) instead of raising."""
        if self._fd is None:
            return
        fd, seq = self._fd, self._seq
        try:
            os.fsync(fd)
        except OSError as err:
            self._broken.add(seq)
            log.error("write-ahead log fsync failed; its pending appends fail", segment=seq, error=err.strerror)
        finally:
            os.close(fd)
            self._fd = None
            self._sizes[seq] = self._written
            self._closed_bytes += self._written
            self._written = self._synced = 0
            self._seq += 1

    def rotate(self) -> int:
        """Close the current segment (if it holds anything) and return its seq; the next append opens a new one."""
        with self._lock:
            closed = self._seq
            self._close_segment()
            return closed

    def retire(self, seq: int) -> None:
        """Delete a closed segment whose records are all durable elsewhere."""
        with self._lock:
            if seq == self._seq and self._fd is not None:
                raise ValueError("cannot retire the open segment")
            self._path(seq).unlink(missing_ok=True)
            self._closed_bytes -= self._sizes.pop(seq, 0)
            self._broken.discard(seq)

    def retire_through(self, seq: int) -> None:
        """Delete every closed segment with a seq <= `seq`."""
        for old in self.segments():
            if old <= seq and not (old == self._seq and self._fd is not None):
                self.retire(old)

    # -- writing -----------------------------------------------------------------------------------
    def append(self, *parts: bytes) -> int:
        """Append one record, the concatenation of `parts` (written as they are, not copied into one);
        returns the segment seq it went to, once durable per the fsync policy. Raises WalError when it is
        not (nothing of it then counts)."""
        record = (record_header(parts), *parts)
        size = sum(map(len, record))
        with self._lock:
            try:
                if self._fd is not None and self._written + size > self.segment_bytes:
                    self._close_segment()
                if self._fd is None:
                    self._open_segment()
            except OSError as err:
                raise WalError(err.errno, f"write-ahead log: {err.strerror}") from err
            assert self._fd is not None
            try:
                _write_all(self._fd, *record)
            except OSError as err:
                self._cut_back()
                raise WalError(err.errno, f"write-ahead log: {err.strerror}") from err
            self._written += size
            self._current_records += 1
            seq, position = self._seq, self._written
        interval_due = time.monotonic() - self._last_sync >= self.interval_seconds
        if self.fsync_policy == "always" or (self.fsync_policy == "interval" and interval_due):
            self._sync(seq, position)
        return seq

    def _cut_back(self) -> None:
        """Under self._lock, after a failed write: remove the partial record from the segment's end, or,
        if the segment cannot be cut, close it (its tail is then a torn record that replay ignores)."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, self._written)
        except OSError as err:
            log.error("cannot cut a failed record off the write-ahead log; closing the segment", error=err.strerror)
            self._close_segment()

    def _sync(self, seq: int, position: int) -> None:
        with self._sync_lock:
            with self._lock:
                if seq in self._broken:
                    raise WalError(5, "write-ahead log fsync failed earlier on this segment")  # EIO
                if seq != self._seq or self._synced >= position:
                    return  # rotated (rotation fsyncs) or another appender's fsync covered us
                target = self._written
                assert self._fd is not None
                fd = os.dup(self._fd)  # a rotation may close the segment's fd while we fsync
            try:
                os.fsync(fd)
            except OSError as err:
                with self._lock:
                    self._broken.add(seq)
                    if seq == self._seq:  # later appends go to a new segment
                        self._close_segment()
                raise WalError(err.errno, f"write-ahead log fsync: {err.strerror}") from err
            finally:
                os.close(fd)
            with self._lock:
                if seq == self._seq:
                    self._synced = max(self._synced, target)
                self._last_sync = time.monotonic()

    def close(self) -> None:
        with self._lock:
            self._close_segment()

    # -- reading -----------------------------------------------------------------------------------
    def header(self, seq: int) -> bytes | None:
        """The blob a segment was opened with, or None when its header is damaged or of version 1."""
        try:
            with open(self._path(seq), "rb") as handle:
                head = handle.read(len(MAGIC) + _SEGMENT_HEADER.size)
                if len(head) < len(MAGIC) + _SEGMENT_HEADER.size or not head.startswith(MAGIC):
                    return None
                length, crc = _SEGMENT_HEADER.unpack_from(head, len(MAGIC))
                blob = handle.read(length)
        except OSError:
            return None
        return blob if len(blob) == length and zlib.crc32(blob) == crc else None

    def replay(self) -> Iterator[tuple[int, bytes]]:
        """Every intact record of every closed segment on disk, oldest first, as (segment seq, payload)."""
        for seq in self.segments():
            if seq == self._seq and self._fd is not None:
                continue  # records appended in this run are not replayed
            path = self._path(seq)
            if path.stat().st_size == 0:
                continue
            with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
                version_1 = data[: len(MAGIC_V1)] == MAGIC_V1
                for payload in _records_v1(data, seq) if version_1 else self._records(data, seq):
                    yield seq, payload

    def _records(self, data: mmap.mmap, seq: int) -> Iterator[bytes]:
        end = len(data)
        position = _first_record(data)
        while position < end:
            found = _record_at(data, position)
            if found is not None:
                payload, position = found
                yield payload
                continue
            resync = _next_record(data, position + 1)
            if resync is None:
                if not _is_torn_tail(data, position):
                    self._damaged(seq, position, end)
                return
            self._damaged(seq, position, resync)
            position = resync

    def _damaged(self, seq: int, start: int, end: int) -> None:
        self.corrupt_records += 1
        log.error(
            "damaged write-ahead log record skipped; replay goes on with the next intact record",
            segment=str(self._path(seq)),
            offset=start,
            bytes_skipped=end - start,
        )


def _write_all(fd: int, *parts: bytes) -> None:
    """Write every part, in as many calls as the kernel needs (a short write is followed by the rest, which
    then fails with the reason, e.g. ENOSPC)."""
    views = [memoryview(part) for part in parts if part]
    while views:
        written = os.writev(fd, views)
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]


def _first_record(data: mmap.mmap) -> int:
    """Where the records of a version 2 segment begin: after its header when the header is intact, else at
    the first record found by its mark (a damaged header loses no record)."""
    fixed = len(MAGIC) + _SEGMENT_HEADER.size
    if data[: len(MAGIC)] == MAGIC and len(data) >= fixed:
        length, crc = _SEGMENT_HEADER.unpack_from(data, len(MAGIC))
        blob = data[fixed : fixed + length]
        if len(blob) == length and zlib.crc32(blob) == crc:
            return fixed + length
    found = _next_record(data, 0)
    return len(data) if found is None else found


def _record_at(data: mmap.mmap, position: int) -> tuple[bytes, int] | None:
    """(payload, next position) when a whole, intact record starts at `position`."""
    head_end = position + _RECORD_HEADER.size
    if head_end > len(data) or data[position : position + len(RECORD_MARK)] != RECORD_MARK:
        return None
    mark, length, payload_crc, head_crc = _RECORD_HEADER.unpack_from(data, position)
    if zlib.crc32(data[position : head_end - 4]) != head_crc or head_end + length > len(data):
        return None
    payload = data[head_end : head_end + length]
    if zlib.crc32(payload) != payload_crc:
        return None
    return payload, head_end + length


def _next_record(data: mmap.mmap, start: int) -> int | None:
    """The position of the next intact record at or after `start`, if any."""
    position = data.find(RECORD_MARK, start)
    while position != -1:
        if _record_at(data, position) is not None:
            return position
        position = data.find(RECORD_MARK, position + 1)
    return None


def _is_torn_tail(data: mmap.mmap, position: int) -> bool:
    """The rest of the segment from `position`, holding no whole record, is a write that never completed: a
    header cut short, a valid header whose payload runs past the end, or zeros."""
    if len(data) - position < _RECORD_HEADER.size:
        return True
    if data[position : position + len(RECORD_MARK)] == RECORD_MARK:
        _, length, _, head_crc = _RECORD_HEADER.unpack_from(data, position)
        head_ok = zlib.crc32(data[position : position + _RECORD_HEADER.size - 4]) == head_crc
        if head_ok and position + _RECORD_HEADER.size + length > len(data):
            return True
    return not any(data[position:])


def _records_v1(data: mmap.mmap, seq: int) -> Iterator[bytes]:
    """Records of a version 1 segment (no sync marks): up to the first record that fails its check."""
    position = len(MAGIC_V1)
    if len(data) < position + 4:
        return
    (length,) = struct.unpack_from("<I", data, position)
    position += 4 + length
    while position + _FRAME_V1.size <= len(data):
        length, crc = _FRAME_V1.unpack_from(data, position)
        payload = data[position + _FRAME_V1.size : position + _FRAME_V1.size + length]
        if len(payload) < length or zlib.crc32(payload) != crc:
            log.warning("version 1 write-ahead log segment read up to a record that fails its check", segment=seq)
            return
        yield payload
        position += _FRAME_V1.size + length
