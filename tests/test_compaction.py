"""Compaction and retention (`collector-ext compact`, collector_ext/storage/compaction.py), local and on a
real S3 API (moto server): the same answers before, during and after; readers never see both a merged
file and its inputs, nor neither; a crash after the merge is finished by the next run; a writer's sequence
and WAL replay see through compacted files; whole days past the retention go."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pytest
from s3_server import S3Server

from analyzer.analysis import Analysis
from analyzer.cost import CostQuery, cost_rows
from analyzer.synthetic import generate
from collector_ext.cli import main as collector_main
from collector_ext.schema import GPU_METRICS
from collector_ext.storage import layout
from collector_ext.storage.compaction import Compactor
from collector_ext.storage.dataset_files import DatasetFiles
from collector_ext.storage.stores import LocalStore, ObjectStore

START = datetime(2026, 11, 2, tzinfo=UTC)
NOW = datetime(2026, 11, 10, 12, tzinfo=UTC)  # every synthetic day is before "today"
MAX_READS = 40


def small_files_dataset(root: Path) -> int:
    """A synthetic dataset of 3 days written in many small files (two writers); returns its file count."""
    generate(root, tasks=240, seed=5, days=3, start=START, chunk_tasks=20, writer_id="writer-a")
    generate(root, tasks=120, seed=6, days=3, start=START, chunk_tasks=20, writer_id="writer-b")
    return len(list(root.glob("spans/date=*/*.parquet")))


def answers(data: Path | str) -> tuple:
    analysis = Analysis.open(data)
    by_agent = cost_rows(analysis, CostQuery(by=["agent"])).rows
    by_task = cost_rows(analysis, CostQuery(by=["task"])).rows
    analysis.con.close()
    return by_agent, by_task


def spans_files(root: Path) -> list[str]:
    return sorted(p.name for p in root.glob("spans/date=*/*.parquet"))


def test_compaction_merges_each_day_and_the_answers_stay_the_same(tmp_path):
    root = tmp_path / "data"
    before_files = small_files_dataset(root)
    before = answers(root)
    compactor = Compactor(LocalStore(root), grace_seconds=0, clock=lambda: NOW)
    result = compactor.run()
    assert (result.files_merged, result.files_deleted) == (before_files, before_files)
    names = spans_files(root)
    assert len(names) == 3 and all(layout.is_compacted(n) for n in names)  # one file per day
    assert answers(root) == before
    again = compactor.run()  # idempotent: nothing left to merge or delete
    assert (again.files_merged, again.files_written, again.files_deleted) == (0, 0, 0)
    assert spans_files(root) == names


def test_a_crash_after_the_merge_hides_the_inputs_and_the_next_run_deletes_them(tmp_path):
    root = tmp_path / "data"
    before_files = small_files_dataset(root)
    before = answers(root)
    # grace period not over: the merged file and its inputs are both on disk (as after a crash right after
    # the merge); readers see the merged file only
    Compactor(LocalStore(root), grace_seconds=3600, clock=lambda: NOW).run()
    assert len(spans_files(root)) == before_files + 3
    assert answers(root) == before
    later = Compactor(LocalStore(root), grace_seconds=3600, clock=lambda: NOW.replace(hour=14)).run()
    assert (later.files_written, later.files_deleted) == (0, before_files)
    assert len(spans_files(root)) == 3 and answers(root) == before


def test_late_files_are_merged_again_and_the_first_merge_stays_replaced(tmp_path):
    root = tmp_path / "data"
    small_files_dataset(root)
    Compactor(LocalStore(root), grace_seconds=0, clock=lambda: NOW).run()
    generate(root, tasks=40, seed=9, days=3, start=START, chunk_tasks=20, writer_id="writer-late")
    late_days = {p.parent.name for p in root.glob("spans/date=*/writer-late-*.parquet")}
    before = answers(root)
    second = Compactor(LocalStore(root), grace_seconds=3600, clock=lambda: NOW.replace(hour=13)).run()
    assert late_days and second.partitions == second.files_written == len(late_days)
    # the second merge lists what the first one replaced too: deleting the first merge later exposes nothing
    store = LocalStore(root)
    for partition in layout.partitions(store, store.list_files(["spans"])):
        if f"date={partition.date}" in late_days:
            (live,) = partition.live
            assert {f.name for f in partition.replaced} < set(layout.replaces_of(store, live))
            assert any(n.startswith("writer-a-") for n in layout.replaces_of(store, live))
    Compactor(LocalStore(root), grace_seconds=3600, clock=lambda: NOW.replace(hour=15)).run()
    assert len(spans_files(root)) == 3 and answers(root) == before


def test_a_writer_continues_past_its_compacted_files_and_replays_against_them(tmp_path):
    root = tmp_path / "data"
    files = DatasetFiles(root, "w1")
    times = [datetime(2026, 11, 1, h, tzinfo=UTC) for h in (1, 2)]
    for t in times:
        files.write("gpu_metrics", pa.Table.from_pylist([{"time": t, "metric": "m", "value": 1.0}], schema=GPU_METRICS))
    Compactor(LocalStore(root), grace_seconds=0, clock=lambda: NOW).run()
    assert [p.name for p in root.glob("gpu_metrics/*/w1-*")] == []
    restarted = DatasetFiles(root, "w1")
    assert restarted.next_seq == 3  # never 1 again: a reused name would be hidden by the merged file
    (merged,) = restarted.files_of_writer("gpu_metrics", min_seq=2, dates=["2026-11-01"])
    assert layout.is_compacted(merged.name)
    keys = restarted.read_keys("gpu_metrics", ["metric"], [merged])
    assert keys == {("m",)}


def test_retention_drops_whole_days_and_the_cli_says_what_it_did(tmp_path, capsys):
    root = tmp_path / "data"
    small_files_dataset(root)
    today = date.today()
    days = sorted(p.name for p in root.glob("spans/date=*"))
    assert days == ["date=2026-11-02", "date=2026-11-03", "date=2026-11-04"]
    keep = (today - date(2026, 11, 3)).days + 1  # keeps 2026-11-03 and later
    assert (
        collector_main(["compact", "--data-dir", str(root), "--retention-days", str(keep), "--grace-minutes", "0"]) == 0
    )
    assert sorted(p.name for p in root.glob("spans/date=*")) == ["date=2026-11-03", "date=2026-11-04"]
    assert capsys.readouterr().out == (
        "merged 36 files into 2 in 2 day partitions; deleted 36 merged inputs; dropped 1 day partitions\n"
    )
    assert all(layout.is_compacted(n) for n in spans_files(root))


def test_compaction_on_s3_under_concurrent_reads(tmp_path, monkeypatch):
    local = tmp_path / "data"
    small_files_dataset(local)
    expected = answers(local)
    with S3Server(tmp_path / "moto.log") as s3:
        s3.create_bucket("bkt")
        fs = s3.filesystem()
        pafs.copy_files(str(local), "bkt/ds", source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
        for key, value in s3.env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("AGENTMETER_CACHE_DIR", str(tmp_path / "cache"))
        location = "s3://bkt/ds"
        store = ObjectStore(location)
        inputs = len(store.list_files(["spans"]))
        seen: list[tuple] = []
        errors: list[BaseException] = []
        done = threading.Event()

        def read() -> None:
            try:
                for _ in range(MAX_READS):  # bounded; at least two reads after the compaction finished
                    seen.append(answers(location))
                    if done.is_set() and len(seen) >= 2:
                        return
            except BaseException as err:  # surfaced below
                errors.append(err)

        reader = threading.Thread(target=read)
        reader.start()
        result = Compactor(store, grace_seconds=0, clock=lambda: NOW).run()
        done.set()
        reader.join(300)
        assert not errors, errors
        assert seen and all(answer == expected for answer in seen)
        assert (result.files_merged, result.files_deleted) == (inputs, inputs)
        spans = [k for k in s3.keys("bkt/ds/spans")]
        assert len(spans) == 3 and all(layout.is_compacted(k.rsplit("/", 1)[1]) for k in spans)
        assert answers(location) == expected
        cached = sorted(p.name for p in (tmp_path / "cache" / "s3" / "bkt" / "ds" / "spans").rglob("*.parquet"))
        assert cached == sorted(k.rsplit("/", 1)[1] for k in spans)  # the inputs left the cache too


@pytest.mark.parametrize("through", ["2026-13-01", "soon"])
def test_a_bad_through_is_one_line(tmp_path, capsys, through):
    assert collector_main(["compact", "--data-dir", str(tmp_path), "--through", through]) == 2
    assert (
        capsys.readouterr().err == f"error: --through {through!r} is not a date (YYYY-MM-DD), 'yesterday' or 'today'\n"
    )
