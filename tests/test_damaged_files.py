"""Damage is contained and said (issue 16): a damaged Parquet file in the dataset does not make every `analyze`
fail; the analyzer leaves it out, answers from the rest and names what it skipped (one line on stderr for the
CLI, `skipped_files` in the API's /api/dataset, Dataset.skipped_files for notebooks).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from stitch_scenarios import chain_of_three, fan_out_five, stitch, stitched_rows, write_rows

from analyzer import dataset as dataset_module
from analyzer.api import create_app
from analyzer.cli import main
from analyzer.dataset import SkippedFile, open_dataset
from collector_ext.schema import SCHEMA_VERSIONS, SPANS


def _two_files(root: Path) -> tuple[Path, Path]:
    """Task 1 (chain of three) in the first file, task 10 (fan-out of five) in the second."""
    write_rows(stitch(chain_of_three().traces), root)
    write_rows(stitch(fan_out_five().traces), root)
    first, second = sorted((root / "spans").glob("date=*/*.parquet"))
    return first, second


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _truncate(path: Path, keep: int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:keep])


DAMAGE = {
    "truncated": lambda path: _truncate(path, path.stat().st_size // 2),
    "footer cut": lambda path: _truncate(path, path.stat().st_size - 3),
    "empty": lambda path: _truncate(path, 0),
    "not parquet": lambda path: path.write_bytes(b"PAR1" + os.urandom(500)),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_the_rest_of_the_dataset_answers(tmp_path: Path, capsys, damage: str) -> None:
    damaged_root, intact_root = tmp_path / "damaged", tmp_path / "intact"
    _, second = _two_files(damaged_root)
    write_rows(stitch(chain_of_three().traces), intact_root)  # what the damaged dataset still holds
    DAMAGE[damage](second)
    relative = second.relative_to(damaged_root)

    for command in (["cost", "--by", "agent"], ["tasks"]):
        code, out, err = _cli(capsys, *command, "--data", str(damaged_root), "--format", "json")
        assert code == 0, err
        assert json.loads(out) == json.loads(_cli(capsys, *command, "--data", str(intact_root), "--format", "json")[1])
        assert err.count("\n") == 1 and err.startswith("warning: skipped 1 unreadable file of the dataset: ")
        assert f"{relative} (damaged Parquet: " in err
    skipped = open_dataset(damaged_root).skipped_files
    assert [s.path for s in skipped] == [str(relative)]


def test_files_of_an_unknown_schema_or_other_column_types_are_left_out(data_dir: Path, capsys) -> None:
    _two_files(data_dir)
    partition = data_dir / "spans" / "date=2026-11-18"
    partition.mkdir(exist_ok=True)
    rows = stitched_rows(chain_of_three().traces)
    newer = SPANS.with_metadata({"agentmeter.schema_version": "agentmeter-v99"})
    pq.write_table(pa.Table.from_pylist(rows, schema=newer), partition / "future-00000001.parquet")
    retyped = pa.schema([pa.field("trace_id", pa.string()), pa.field("span_id", pa.string())])
    pq.write_table(pa.table({"trace_id": ["x"], "span_id": ["y"]}, schema=retyped), partition / "odd-00000001.parquet")

    dataset = open_dataset(data_dir)
    assert sorted(dataset.skipped_files, key=lambda s: s.path) == [
        SkippedFile(
            "spans/date=2026-11-18/future-00000001.parquet",
            f"schema agentmeter-v99, which this analyzer does not know (it reads {', '.join(SCHEMA_VERSIONS)})",
        ),
        SkippedFile(
            "spans/date=2026-11-18/odd-00000001.parquet", "column trace_id is string, not fixed_size_binary[16]"
        ),
    ]
    assert dataset.con.execute("SELECT count(DISTINCT trace_id) FROM spans").fetchone()[0] == 3 + 6
    code, _, err = _cli(capsys, "tasks", "--data", str(data_dir), "--format", "csv")
    assert code == 0 and err.startswith("warning: skipped 2 unreadable files of the dataset: ")


def test_the_api_names_what_it_skipped(data_dir: Path) -> None:
    _, second = _two_files(data_dir)
    _truncate(second, 100)
    client = TestClient(create_app(data_dir))
    assert client.get("/api/cost", params={"by": "agent"}).status_code == 200
    assert client.get("/api/tasks").status_code == 200
    answer = client.get("/api/dataset").json()
    assert [s["path"] for s in answer["skipped_files"]] == [str(second.relative_to(data_dir))]
    assert answer["skipped_files"][0]["reason"].startswith("damaged Parquet: ")
    assert answer["duplicate_span_rows"] == 0


def test_footers_are_read_once_per_file_version(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server opens the dataset per request: a file's footer is read again only when its size or mtime change."""
    first, second = _two_files(data_dir)
    intact = second.read_bytes()
    _truncate(second, 100)
    reads: list[str] = []
    real = dataset_module._read_footer
    monkeypatch.setattr(
        dataset_module, "_read_footer", lambda path, schema: reads.append(path.name) or real(path, schema)
    )
    assert len(open_dataset(data_dir).skipped_files) == 1
    assert len(open_dataset(data_dir).skipped_files) == 1
    assert sorted(reads) == sorted([first.name, second.name])  # the second open read no footer
    second.write_bytes(intact)  # repaired (say, restored from a backup): read again, and counted again
    dataset = open_dataset(data_dir)
    assert dataset.skipped_files == () and reads[-1] == second.name and len(reads) == 3
    assert dataset.con.execute("SELECT count(DISTINCT trace_id) FROM spans").fetchone()[0] == 3 + 6
