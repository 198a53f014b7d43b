"""The write-ahead log: records survive, torn tails are dropped, segments rotate and retire."""

from __future__ import annotations

import threading

import pytest

from collector_ext.storage.wal import WriteAheadLog


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
