"""Rows unique by (trace_id, span_id) in what the analyzer counts (issue 16), whatever the receiver wrote.

OTLP delivery is at least once: a client retrying after a lost answer, a WAL replay, two receivers with one
writer id each write the same spans again. The `spans` view (analyzer/dataset.py) keeps one copy of each span,
so every figure is the one of a single write. The copies below are real Parquet files of real writers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from stitch_scenarios import (
    BASE_NS,
    agent,
    chain_of_three,
    llm,
    refs,
    rows_of,
    sid,
    span,
    stitched_rows,
    tid,
    write_rows,
)

from analyzer import span_copies
from analyzer.cli import main
from analyzer.dataset import open_dataset
from collector_ext.schema import STITCH_EARLY, STITCH_OK
from collector_ext.traces.stitching import Stitcher


def _analyze(capsys, *args: str) -> list[dict]:
    assert main([*args, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def _figures(capsys, root: Path) -> tuple[list[dict], list[dict]]:
    cost = _analyze(capsys, "cost", "--data", str(root), "--by", "agent")
    tasks = _analyze(capsys, "tasks", "--data", str(root))
    return cost, tasks


def _received(rows: list[dict], seconds: int) -> list[dict]:
    return [{**row, "received_time": BASE_NS + seconds * 1_000_000_000} for row in rows]


def test_a_retried_batch_counts_once(tmp_path: Path, capsys) -> None:
    """The issue's case: spans without gen_ai.response.id, delivered twice (the answer to the first was lost)."""
    rows = stitched_rows(chain_of_three().traces)
    assert not any(row["response_id"] for row in rows)
    once, twice = tmp_path / "once", tmp_path / "twice"
    write_rows(rows, once)
    write_rows(_received(rows, 1), twice)
    write_rows(_received(rows, 2), twice)  # the retry: a second file of the same writer
    assert len(list((twice / "spans").glob("date=*/*.parquet"))) == 2

    cost, tasks = _figures(capsys, twice)
    assert (cost, tasks) == _figures(capsys, once)
    assert [(t["traces"], t["llm_calls"], t["input_tokens"], t["output_tokens"]) for t in tasks] == [(3, 3, 600, 60)]
    dataset = open_dataset(twice)
    assert dataset.duplicate_span_rows == len(rows)
    assert dataset.con.execute("SELECT count(*), count(DISTINCT (trace_id, span_id)) FROM spans").fetchone() == (
        len(rows),
        len(rows),
    )


def test_two_writers_with_overlapping_rows(tmp_path: Path, capsys) -> None:
    """A writer-id clash replayed by two receivers: each file holds part of the other's rows."""
    rows = stitched_rows(chain_of_three().traces)
    write_rows(rows[:7], tmp_path / "a", writer_id="receiver-a")
    write_rows(rows[3:], tmp_path / "a", writer_id="receiver-b")
    write_rows(rows, tmp_path / "once")
    assert _figures(capsys, tmp_path / "a") == _figures(capsys, tmp_path / "once")
    assert open_dataset(tmp_path / "a").duplicate_span_rows == 4


def test_copies_within_one_file(data_dir: Path) -> None:
    """A trace that held a retried span twice writes it twice in one file."""
    rows = stitched_rows([[agent(1, 1, name="solo"), llm(1, 2, 1, (5, 5))]])
    write_rows([*_received(rows, 1), *_received(rows[1:], 2)], data_dir)
    con = open_dataset(data_dir).con
    assert con.execute("SELECT count(*) FROM spans").fetchone()[0] == 2
    kept = con.execute("SELECT epoch_ns(received_time) FROM spans WHERE span_id = ?", [sid(1, 2)]).fetchone()[0]
    assert kept == BASE_NS + 2_000_000_000  # the later delivery


def test_the_copy_of_the_whole_trace_is_kept(data_dir: Path, capsys) -> None:
    """Memory pressure wrote part of a trace early; a WAL replay wrote the whole trace again, earlier received.

    The whole write's stitching and usage_counted saw every span: its copies win over the early part's, even
    though the early part was received later; the rollup on the agent span is not counted on top of the call.
    """
    whole = rows_of(
        Stitcher().finish_trace(
            refs([agent(1, 1, name="boss", input_tokens=99, output_tokens=9), span(1, 2, 1), llm(1, 3, 2, (10, 1))]),
            None,
        )
    )
    early = rows_of(Stitcher().finish_trace(refs([span(1, 2, 1), llm(1, 3, 2, (10, 1))]), STITCH_EARLY))
    write_rows(_received(whole, 1), data_dir, writer_id="replay")
    write_rows(_received(early, 5), data_dir, writer_id="live")
    con = open_dataset(data_dir).con
    states = con.execute("SELECT span_id, stitch_state FROM spans ORDER BY span_id").fetchall()
    assert states == [(sid(1, 1), STITCH_OK), (sid(1, 2), STITCH_OK), (sid(1, 3), STITCH_OK)]
    tasks = _analyze(capsys, "tasks", "--data", str(data_dir))
    assert [(t["task_id"], t["input_tokens"], t["output_tokens"], t["stitch_state"]) for t in tasks] == [
        (tid(1).hex(), 10, 1, "ok")
    ]


def test_a_dataset_without_copies_is_read_as_written(data_dir: Path) -> None:
    rows = stitched_rows(chain_of_three().traces)
    write_rows(rows, data_dir)
    dataset = open_dataset(data_dir)
    assert dataset.duplicate_span_rows == 0
    assert dataset.con.execute("SELECT count(*) FROM spans").fetchone()[0] == len(rows)
    # the view exposes the data contract's columns only, not where a row lies
    columns = [c[0] for c in dataset.con.execute("SELECT * FROM spans LIMIT 0").description]
    assert "filename" not in columns and "file_row_number" not in columns


@pytest.mark.parametrize("empty", [True, False])
def test_no_span_files(data_dir: Path, empty: bool) -> None:
    (data_dir / "spans").mkdir()
    if not empty:
        (data_dir / "spans" / "date=2026-11-18").mkdir()
    dataset = open_dataset(data_dir)
    assert dataset.duplicate_span_rows == 0
    assert dataset.con.execute("SELECT count(*) FROM spans").fetchone()[0] == 0


# ------------------------------------------------------------------------------------------------- the cache


def _reading(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Record which files each open reads span ids from."""
    reads: list[list[str]] = []
    real = span_copies._hashes
    monkeypatch.setattr(
        span_copies, "_hashes", lambda con, files: reads.append(sorted(p.name for p in files)) or real(con, files)
    )
    return reads


def test_each_file_is_read_once_and_copies_found_among_old_ones(data_dir: Path, monkeypatch) -> None:
    reads = _reading(monkeypatch)
    rows = stitched_rows(chain_of_three().traces)
    write_rows(_received(rows, 1), data_dir)
    assert open_dataset(data_dir).duplicate_span_rows == 0
    assert open_dataset(data_dir).duplicate_span_rows == 0
    assert reads == [["w1-00000001.parquet"]]  # the second open read no span id

    write_rows(_received(rows[:4], 2), data_dir)  # a retry of part of the batch, in a new file
    dataset = open_dataset(data_dir)
    assert reads[-1] == ["w1-00000002.parquet"]  # only the new file
    assert dataset.duplicate_span_rows == 4
    kept = dataset.con.execute(
        "SELECT DISTINCT epoch_ns(received_time) FROM spans WHERE span_id IN ?", [[row["span_id"] for row in rows[:4]]]
    ).fetchall()
    assert kept == [(BASE_NS + 2_000_000_000,)]

    # retention removed the first file: everything is read again, and nothing is a copy any more
    first = next((data_dir / "spans").glob("date=*/w1-00000001.parquet"))
    first.unlink()
    dataset = open_dataset(data_dir)
    assert reads[-1] == ["w1-00000002.parquet"] and len(reads) == 3
    assert dataset.duplicate_span_rows == 0


def test_without_a_usable_cache_the_answer_is_the_same(data_dir: Path, monkeypatch, analyzer_cache: Path) -> None:
    rows = stitched_rows(chain_of_three().traces)
    write_rows(_received(rows, 1), data_dir)
    write_rows(_received(rows, 2), data_dir)
    assert open_dataset(data_dir).duplicate_span_rows == len(rows)
    for cache in analyzer_cache.glob("agentmeter/span-ids-*.npz"):
        cache.write_bytes(b"not a cache")  # damaged: recomputed
    assert open_dataset(data_dir).duplicate_span_rows == len(rows)
    blocked = analyzer_cache / "blocked"
    blocked.write_text("a file where the cache directory should be")
    monkeypatch.setenv("AGENTMETER_CACHE_DIR", str(blocked))
    assert open_dataset(data_dir).duplicate_span_rows == len(rows)
    assert open_dataset(data_dir).duplicate_span_rows == len(rows)
