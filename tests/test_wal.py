"""The write-ahead log: records survive, torn tails are dropped, damage is skipped and the rest replayed, failed
writes count for nothing, segments rotate and retire."""

from __future__ import annotations

import errno
import os
import struct
import threading
import zlib

import pytest
from structlog.testing import capture_logs

from collector_ext.storage.wal import MAGIC, MAGIC_V1, WalError, WriteAheadLog


@pytest.mark.parametrize("policy", ["always", "interval", "never"])
def test_records_replay_in_order_after_reopen(tmp_path, policy):
    wal = WriteAheadLog(tmp_path, fsync=policy, segment_header=lambda: b"hdr")
    seqs = [wal.append(f"record-{i}".encode()) for i in range(5)]
    assert seqs == [1] * 5
    wal.close()
    again = WriteAheadLog(tmp_path, fsync=policy)
    assert list(again.replay()) == [(1, f"record-{i}".encode()) for i in range(5)]
    assert again.header(1) == b"hdr"


def test_torn_tail_ends_replay_of_that_segment(tmp_path):
    wal = WriteAheadLog(tmp_path)
    wal.append(b"complete")
    wal.append(b"will be torn")
    wal.close()
    segment = tmp_path / "000000000001.wal"
    segment.write_bytes(segment.read_bytes()[:-3])  # crash in the middle of the last record
    assert list(WriteAheadLog(tmp_path).replay()) == [(1, b"complete")]


def test_corrupted_record_is_not_replayed(tmp_path):
    wal = WriteAheadLog(tmp_path)
    wal.append(b"aaaa")
    wal.close()
    segment = tmp_path / "000000000001.wal"
    data = bytearray(segment.read_bytes())
    data[-1] ^= 0xFF
    segment.write_bytes(bytes(data))
    assert list(WriteAheadLog(tmp_path).replay()) == []


def test_segments_rotate_by_size_and_retire(tmp_path):
    wal = WriteAheadLog(tmp_path, segment_bytes=64)
    seqs = [wal.append(b"x" * 40) for _ in range(3)]
    assert seqs == [1, 2, 3]
    assert wal.rotate() == 3
    assert wal.segments() == [1, 2, 3]
    wal.retire_through(2)
    assert wal.segments() == [3]
    assert wal.append(b"y") == 4
    with pytest.raises(ValueError, match="open segment"):
        wal.retire(4)
    assert [payload for _, payload in WriteAheadLog(tmp_path).replay()] == [b"x" * 40, b"y"]


def test_bytes_on_disk_tracks_segments(tmp_path):
    wal = WriteAheadLog(tmp_path, segment_bytes=64)
    wal.append(b"x" * 40)
    wal.append(b"x" * 40)
    on_disk = sum(p.stat().st_size for p in tmp_path.glob("*.wal"))
    assert wal.bytes_on_disk == on_disk
    wal.rotate()
    wal.retire_through(1)
    assert wal.bytes_on_disk == sum(p.stat().st_size for p in tmp_path.glob("*.wal"))


def test_concurrent_appends_all_replay(tmp_path):
    wal = WriteAheadLog(tmp_path, segment_bytes=4096)

    def writer(n: int) -> None:
        for i in range(50):
            wal.append(f"{n}:{i}".encode())

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    wal.close()
    payloads = sorted(p.decode() for _, p in WriteAheadLog(tmp_path).replay())
    assert payloads == sorted(f"{n}:{i}" for n in range(8) for i in range(50))


# -- damage: every intact record after a damaged one is replayed ---------------------------------------------
def _segment_with_records(tmp_path, count: int = 20) -> tuple[WriteAheadLog, list[bytes], list[int]]:
    """A closed segment of `count` records; returns the WAL, the payloads and each record's offset."""
    wal = WriteAheadLog(tmp_path, segment_header=lambda: b"hdr")
    payloads = [f"record-{i:02d}-".encode() * (i + 3) for i in range(count)]
    offsets = []
    for payload in payloads:
        offsets.append(wal._written)
        wal.append(payload)
    wal.close()
    return wal, payloads, offsets


@pytest.mark.parametrize(
    ("damage", "offset_in_record"),
    [
        ("one bit flipped in the payload", 16 + 5),
        ("a bad length", 4),
        ("one bit flipped in the sync mark", 1),
        ("one bit flipped in the payload crc", 9),
    ],
)
def test_a_damaged_record_5_of_20_is_skipped_logged_and_counted_and_every_record_after_it_replayed(
    tmp_path, damage: str, offset_in_record: int
):
    _, payloads, offsets = _segment_with_records(tmp_path)
    segment = tmp_path / "000000000001.wal"
    data = bytearray(segment.read_bytes())
    data[offsets[4] + offset_in_record] ^= 0x10  # record 5 of 20
    segment.write_bytes(bytes(data))
    reader = WriteAheadLog(tmp_path)
    with capture_logs() as logs:
        replayed = [payload for _, payload in reader.replay()]
    assert replayed == payloads[:4] + payloads[5:], damage
    assert reader.corrupt_records == 1
    (error,) = [entry for entry in logs if entry["log_level"] == "error"]
    assert error["event"].startswith("damaged write-ahead log record skipped")
    assert (error["segment"], error["offset"]) == (str(segment), offsets[4])


def test_an_overwritten_segment_header_loses_no_record_and_is_not_trusted(tmp_path):
    _, payloads, _ = _segment_with_records(tmp_path, count=5)
    segment = tmp_path / "000000000001.wal"
    data = bytearray(segment.read_bytes())
    data[:12] = b"\x00" * 12  # magic and header length gone
    segment.write_bytes(bytes(data))
    reader = WriteAheadLog(tmp_path)
    assert reader.header(1) is None
    assert [payload for _, payload in reader.replay()] == payloads
    # a header whose blob was changed fails its crc: not trusted either
    _segment_with_records(tmp_path / "b", count=1)
    segment = tmp_path / "b" / "000000000001.wal"
    data = bytearray(segment.read_bytes())
    data[len(MAGIC) + 8] ^= 0x01  # first byte of the blob
    segment.write_bytes(bytes(data))
    assert WriteAheadLog(tmp_path / "b").header(1) is None


def test_a_version_1_segment_still_replays(tmp_path):
    """Segments written before the sync-marked framing: magic v1, header, `length | crc | payload` records."""
    records = [b"first", b"second"]
    body = MAGIC_V1 + struct.pack("<I", 3) + b"hdr"
    body += b"".join(struct.pack("<II", len(r), zlib.crc32(r)) + r for r in records)
    (tmp_path / "000000000007.wal").write_bytes(body)
    wal = WriteAheadLog(tmp_path)
    assert list(wal.replay()) == [(7, b"first"), (7, b"second")]
    assert wal.append(b"third") == 8


# -- write faults: nothing of a failed append counts, nothing after it is lost ---------------------------------
class ShortWrite:
    """os.writev that writes `first` bytes of the next record, then fails with `error` (a disk filling up)."""

    def __init__(self, first: int, error: int = errno.ENOSPC) -> None:
        self.first, self.error, self.calls = first, error, 0
        self.real = os.writev

    def __call__(self, fd, buffers):
        self.calls += 1
        if self.calls == 1:
            return os.write(fd, b"".join(bytes(b) for b in buffers)[: self.first])
        raise OSError(self.error, os.strerror(self.error))


def test_a_short_write_on_a_full_disk_fails_the_append_and_is_cut_back(tmp_path, monkeypatch):
    wal = WriteAheadLog(tmp_path)
    wal.append(b"acknowledged-1")
    size = (tmp_path / "000000000001.wal").stat().st_size
    monkeypatch.setattr(os, "writev", ShortWrite(first=20))
    with pytest.raises(WalError) as raised:
        wal.append(b"x" * 100)
    monkeypatch.undo()
    assert raised.value.errno == errno.ENOSPC
    assert (tmp_path / "000000000001.wal").stat().st_size == size == wal.bytes_on_disk  # no partial record
    assert wal.append(b"acknowledged-2") == 1
    wal.close()
    reader = WriteAheadLog(tmp_path)
    assert [p for _, p in reader.replay()] == [b"acknowledged-1", b"acknowledged-2"]
    assert reader.corrupt_records == 0


def test_a_failed_write_that_cannot_be_cut_back_closes_the_segment_and_later_records_survive(tmp_path, monkeypatch):
    wal = WriteAheadLog(tmp_path)
    wal.append(b"acknowledged-1")

    def no_truncate(fd, length):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "writev", ShortWrite(first=30))
    monkeypatch.setattr(os, "ftruncate", no_truncate)
    with pytest.raises(WalError):
        wal.append(b"y" * 100)
    monkeypatch.undo()
    assert wal.append(b"acknowledged-2") == 2  # a new segment; the torn one is closed
    wal.append(b"acknowledged-3")
    wal.close()
    reader = WriteAheadLog(tmp_path)
    assert list(reader.replay()) == [(1, b"acknowledged-1"), (2, b"acknowledged-2"), (2, b"acknowledged-3")]
    assert reader.corrupt_records == 0  # a torn tail, never acknowledged: not damage


def test_a_failed_fsync_fails_the_append_and_the_next_one_goes_to_a_new_segment(tmp_path, monkeypatch):
    wal = WriteAheadLog(tmp_path, fsync="always")
    wal.append(b"acknowledged-1")
    real_fsync = os.fsync
    failures = iter([OSError(errno.EIO, "Input/output error")])

    def fsync_once_failing(fd):
        error = next(failures, None)
        if error is not None:
            raise error
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_once_failing)
    with pytest.raises(WalError) as raised:
        wal.append(b"not acknowledged")
    assert raised.value.errno == errno.EIO
    assert wal.append(b"acknowledged-2") == 2  # the segment whose fsync failed is never trusted again


@pytest.mark.parametrize("code", [errno.EMFILE, errno.ENFILE, errno.ENOSPC])
def test_a_segment_that_cannot_be_opened_fails_the_append_with_its_errno(tmp_path, monkeypatch, code):
    wal = WriteAheadLog(tmp_path)

    def no_open(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "open", no_open)
    with pytest.raises(WalError) as raised:
        wal.append(b"x")
    monkeypatch.undo()
    assert raised.value.errno == code
    assert wal.append(b"x") == 1
    wal.close()
    assert [p for _, p in WriteAheadLog(tmp_path).replay()] == [b"x"]
