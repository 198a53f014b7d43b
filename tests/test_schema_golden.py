"""The dataset contract is versioned (issue 13): a change to collector_ext/schema.py's columns without a version
bump fails here, and the analyzer reads every version it knows.

tests/golden/schema/<version>.json is the committed copy of every table's columns (name, Arrow type, nullable)
of each version in SCHEMA_VERSIONS. Changing a column: bump SCHEMA_VERSION, append it to SCHEMA_VERSIONS, then
`python tests/test_schema_golden.py` writes the new version's golden copy (it never rewrites an existing one).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from stitch_scenarios import chain_of_three, stitch, stitched_rows, write_rows

from analyzer.cli import main
from analyzer.dataset import AnalyzerError, open_dataset
from collector_ext.schema import SCHEMA_FILE, SCHEMA_VERSION, SCHEMA_VERSIONS, SPANS, TABLES

GOLDEN = Path(__file__).resolve().parent / "golden" / "schema"


def columns_of(tables: dict[str, tuple[pa.Schema, str]]) -> dict:
    """Every table's columns as JSON: name, Arrow type (nested types spelled out), nullable; in order."""
    return {
        table: [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]
        for table, (schema, _) in tables.items()
    }


def golden(version: str) -> dict:
    return json.loads((GOLDEN / f"{version}.json").read_text())


def test_the_current_schema_is_its_versions_golden_copy() -> None:
    assert SCHEMA_VERSIONS[-1] == SCHEMA_VERSION, "append the new SCHEMA_VERSION to SCHEMA_VERSIONS"
    assert (GOLDEN / f"{SCHEMA_VERSION}.json").exists(), (
        f"no golden copy of {SCHEMA_VERSION}: run `python tests/test_schema_golden.py` and commit it"
    )
    assert columns_of(TABLES) == golden(SCHEMA_VERSION), (
        f"collector_ext/schema.py changed the columns of {SCHEMA_VERSION} without a version bump: bump "
        "SCHEMA_VERSION, append it to SCHEMA_VERSIONS and write its golden copy (python tests/test_schema_golden.py)"
    )


def test_every_known_version_has_a_golden_copy() -> None:
    assert len(set(SCHEMA_VERSIONS)) == len(SCHEMA_VERSIONS)
    assert sorted(p.stem for p in GOLDEN.glob("*.json")) == sorted(SCHEMA_VERSIONS)
    assert all(set(golden(version)) >= {"spans"} for version in SCHEMA_VERSIONS)


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s.set(s.get_field_index("input_tokens"), pa.field("input_tokens", pa.int32())),
        lambda s: s.set(s.get_field_index("task_id"), pa.field("task_id", pa.binary(16), nullable=False)),
        lambda s: s.append(pa.field("calls_without_usage", pa.int64())),
        lambda s: s.remove(s.get_field_index("conversation_id")),
    ],
    ids=["retyped", "nullability", "added", "removed"],
)
def test_any_column_change_breaks_the_golden_copy(change) -> None:
    changed = dict(TABLES, spans=(change(SPANS), TABLES["spans"][1]))
    assert columns_of(changed) != golden(SCHEMA_VERSION)


def test_files_without_a_later_column_read_it_as_null(data_dir: Path, capsys) -> None:
    """A file of an older version lacks columns the current one has: they read as NULL, every query works."""
    rows = stitched_rows(chain_of_three().traces)
    dropped = ("response_id", "reported_cost_usd", "conversation_id")
    older = pa.schema([f for f in SPANS if f.name not in dropped], metadata=SPANS.metadata)
    table = pa.Table.from_pylist([{f.name: r.get(f.name) for f in older} for r in rows], schema=older)
    (data_dir / "spans" / "date=2026-11-18").mkdir(parents=True)
    pq.write_table(table, data_dir / "spans" / "date=2026-11-18" / "old-00000001.parquet")
    con = open_dataset(data_dir).con
    assert con.execute(
        "SELECT count(*), count(response_id), count(reported_cost_usd), count(conversation_id) FROM spans"
    ).fetchone() == (len(rows), 0, 0, 0)
    columns = {c[0] for c in con.execute("SELECT * FROM spans LIMIT 0").description}
    assert columns >= set(SPANS.names)
    assert main(["tasks", "--data", str(data_dir), "--format", "json"]) == 0
    tasks = json.loads(capsys.readouterr().out)
    assert [(t["traces"], t["input_tokens"], t["output_tokens"]) for t in tasks] == [(3, 600, 60)]


def test_every_known_dataset_version_opens(data_dir: Path) -> None:
    write_rows(stitch(chain_of_three().traces), data_dir)
    for version in SCHEMA_VERSIONS:
        (data_dir / SCHEMA_FILE).write_text(json.dumps({"schema_version": version}))
        assert open_dataset(data_dir).con.execute("SELECT count(*) FROM spans").fetchone()[0] == 9


def test_an_unknown_dataset_version_is_refused_by_name(data_dir: Path) -> None:
    write_rows(stitch(chain_of_three().traces), data_dir)
    (data_dir / SCHEMA_FILE).write_text(json.dumps({"schema_version": "agentmeter-v99"}))
    with pytest.raises(AnalyzerError, match=r"schema agentmeter-v99, which this analyzer does not know \(it reads "):
        open_dataset(data_dir)


if __name__ == "__main__":  # write the golden copy of the current version, never an existing one
    target = GOLDEN / f"{SCHEMA_VERSION}.json"
    if target.exists():
        sys.exit(f"{target} exists: a version's golden copy never changes (bump SCHEMA_VERSION instead)")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(columns_of(TABLES), indent=1) + "\n")
    print(f"wrote {target}")
