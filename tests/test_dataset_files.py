"""The dataset writer: atomic Hive-partitioned files, writer ids and sequences, read back by DuckDB."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from collector_ext.schema import DICTIONARY_COLUMNS, GPU_METRICS, SCHEMA_VERSION, SPANS
from collector_ext.storage.dataset_files import DatasetFiles


def _metrics(times: list[datetime]) -> pa.Table:
    rows = [{"time": t, "metric": "DCGM_FI_DEV_FB_USED", "value": float(i)} for i, t in enumerate(times)]
    return pa.Table.from_pylist(rows, schema=GPU_METRICS)


def test_files_are_partitioned_by_date_and_numbered_per_writer(data_dir):
    times = [datetime(2026, 11, 1, 23, 59, tzinfo=UTC), datetime(2026, 11, 2, 0, 1, tzinfo=UTC)]
    a = DatasetFiles(data_dir, "receiver-a")
    b = DatasetFiles(data_dir, "receiver-b")
    written = a.write("gpu_metrics", _metrics(times)) + b.write("gpu_metrics", _metrics(times[:1]))
    names = sorted(str(p.relative_to(data_dir)) for p in written)
    assert names == [
        "gpu_metrics/date=2026-11-01/receiver-a-00000001.parquet",
        "gpu_metrics/date=2026-11-01/receiver-b-00000001.parquet",
        "gpu_metrics/date=2026-11-02/receiver-a-00000002.parquet",
    ]
    assert not list(data_dir.rglob("*.tmp"))
    assert json.loads((data_dir / "_schema.json").read_text())["schema_version"] == SCHEMA_VERSION
    rows = (
        duckdb.connect()
        .sql(
            f"SELECT date::VARCHAR AS d, count(*) AS n FROM read_parquet('{data_dir}/gpu_metrics/*/*.parquet', "
            "hive_partitioning=true) GROUP BY ALL ORDER BY d"
        )
        .fetchall()
    )
    assert rows == [("2026-11-01", 2), ("2026-11-02", 1)]


def test_sequence_continues_after_restart(data_dir):
    DatasetFiles(data_dir, "w1").write("gpu_metrics", _metrics([datetime(2026, 11, 1, tzinfo=UTC)]))
    again = DatasetFiles(data_dir, "w1")
    assert again.next_seq == 2
    assert [p.name for p in again.files_of_writer("gpu_metrics", min_seq=1)] == ["w1-00000001.parquet"]
    assert again.files_of_writer("gpu_metrics", min_seq=2) == []


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "-lead", "x" * 64])
def test_writer_id_cannot_escape_the_dataset(data_dir, bad):
    with pytest.raises(ValueError, match="invalid writer id"):
        DatasetFiles(data_dir, bad)


def test_spans_files_dictionary_encode_only_the_low_cardinality_columns(tmp_path) -> None:

    row = {name: None for name in SPANS.names} | {
        "trace_id": b"\x01" * 16,
        "span_id": b"\x02" * 8,
        "start_time": 1_800_000_000_000_000_000,
        "end_time": 1_800_000_000_000_000_001,
        "name": "chat gpt-4o",
        "response_id": "chatcmpl-1",
        "attributes": {"server.address": "api.openai.com"},
    }
    (path,) = DatasetFiles(tmp_path, "writer-a").write("spans", pa.Table.from_pylist([row], schema=SPANS))
    metadata = pq.ParquetFile(path).metadata.row_group(0)
    encodings = {metadata.column(i).path_in_schema: metadata.column(i).encodings for i in range(metadata.num_columns)}
    dictionary = {path for path, used in encodings.items() if "RLE_DICTIONARY" in used}
    assert dictionary == set(DICTIONARY_COLUMNS["spans"])
    assert {"name", "attributes.key_value.key"} <= dictionary
    assert not {"trace_id", "span_id", "response_id", "attributes.key_value.value"} & dictionary
