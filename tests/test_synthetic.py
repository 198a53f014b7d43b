"""analyzer.synthetic: the generated dataset is shaped like the receiver's output, deterministic, and realistic."""

from __future__ import annotations

from pathlib import Path

import pyarrow.dataset as ds
import pytest

from analyzer.dataset import open_dataset
from analyzer.pricing import resolve_model
from analyzer.synthetic import MAX_DEPTH, MODEL_CATALOG, SELF_HOSTED, generate, model_catalog
from collector_ext.schema import SPANS


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("synthetic")
    return root, generate(root, tasks=400, seed=11)


def test_summary_matches_the_written_files(generated) -> None:
    root, summary = generated
    con = open_dataset(root).con
    spans, traces, tasks, llm = con.execute(
        "SELECT count(*), count(DISTINCT trace_id), count(DISTINCT task_id), count(*) FILTER (category = 'llm') FROM spans"
    ).fetchone()
    assert (spans, traces, tasks, llm) == (summary.spans, summary.traces, 400, summary.llm_calls)
    assert sorted(summary.files) == sorted(root.glob("spans/date=*/*.parquet"))
    schema = ds.dataset(summary.files, format="parquet").schema
    assert schema.remove_metadata() == SPANS.remove_metadata()


def test_same_seed_same_data_other_seed_other_data(tmp_path: Path) -> None:
    tables = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        summary = generate(tmp_path / name, tasks=30, seed=seed)
        tables.append(
            ds.dataset(sorted(summary.files), format="parquet").to_table().sort_by([("span_id", "ascending")])
        )
    assert tables[0].equals(tables[1])
    assert not tables[0].equals(tables[2])


def test_sub_agents_are_linked_traces_with_consistent_attribution(generated) -> None:
    con = open_dataset(generated[0]).con
    # every link on a sub-agent root names the delegate span of its parent trace, in the same task
    bad_links, links = con.execute(
        """
        WITH l AS (SELECT trace_id, task_id, agent_depth, parent_agent_name, unnest(links) AS link
                   FROM spans WHERE links IS NOT NULL)
        SELECT count(*) FILTER (WHERE p.span_id IS NULL OR p.tool_name <> 'delegate' OR p.task_id <> l.task_id
                                   OR p.agent_depth + 1 <> l.agent_depth OR p.agent_name <> l.parent_agent_name
                                   OR p.trace_id = l.trace_id),
               count(*)
        FROM l LEFT JOIN spans AS p ON p.trace_id = l.link.trace_id AND p.span_id = l.link.span_id
        """
    ).fetchone()
    assert bad_links == 0 and links > 100
    depths = dict(con.execute("SELECT agent_depth, count(DISTINCT trace_id) FROM spans GROUP BY ALL").fetchall())
    assert set(depths) == set(range(MAX_DEPTH + 1)) and depths[0] == 400
    # one root agent run per trace; its id is every span's agent_span_id; top traces are their own task
    assert con.execute(
        """
        SELECT count(*) FROM spans AS s JOIN spans AS r ON r.trace_id = s.trace_id AND r.parent_span_id IS NULL
        WHERE r.category <> 'agent' OR s.agent_span_id <> r.span_id OR s.agent_name <> r.agent_name
           OR (s.agent_depth = 0) <> (s.task_id = s.trace_id)
        """
    ).fetchone() == (0,)
    assert con.execute("SELECT count(*) FROM spans WHERE parent_span_id IS NULL").fetchone()[0] == generated[1].traces


def test_usage_follows_the_dataset_rules(generated) -> None:
    con = open_dataset(generated[0]).con
    row = con.execute(
        """
        SELECT count(*) FILTER (WHERE usage_counted <> (category = 'llm')),
               count(*) FILTER (WHERE category <> 'llm' AND input_tokens IS NOT NULL),
               count(*) FILTER (WHERE cache_read_tokens + cache_write_tokens > input_tokens),
               count(*) FILTER (WHERE reasoning_tokens > output_tokens),
               count(*) FILTER (WHERE input_tokens > 200000),
               count(*) FILTER (WHERE cache_read_tokens > 0), count(*) FILTER (WHERE cache_write_tokens > 0),
               count(*) FILTER (WHERE reasoning_tokens > 0), count(*) FILTER (WHERE reported_cost_usd IS NOT NULL),
               count(DISTINCT response_id) = count(*) FILTER (WHERE category = 'llm')
        FROM spans
        """
    ).fetchone()
    assert row[:4] == (0, 0, 0, 0)
    assert all(row[4:9]) and row[9]


def test_many_providers_aliases_dated_names_and_a_self_hosted_model(generated) -> None:
    con = open_dataset(generated[0]).con
    pairs = set(con.execute("SELECT DISTINCT provider, request_model FROM spans WHERE category = 'llm'").fetchall())
    assert pairs == {(p, m) for p, m, _ in MODEL_CATALOG}
    assert {"aws.bedrock", "gcp.vertex_ai", "azure.ai.openai", "x_ai"} <= {p for p, _ in pairs}
    unpriced = {pair for pair in pairs if isinstance(resolve_model(*pair), str)}
    assert unpriced == {SELF_HOSTED}


def test_bursts_and_idle_gaps_over_several_days(generated) -> None:
    con = open_dataset(generated[0]).con
    days, longest_gap_h, close = con.execute(
        """
        WITH starts AS (SELECT epoch_ns(start_time) / 1e9 AS t_s,
                               epoch_ns(start_time) / 1e9 - lag(epoch_ns(start_time) / 1e9) OVER (ORDER BY start_time) AS gap
                        FROM spans WHERE agent_depth = 0 AND parent_span_id IS NULL)
        SELECT (SELECT count(DISTINCT floor(t_s / 86400)) FROM starts), max(gap) / 3600, count(*) FILTER (WHERE gap < 300)
        FROM starts
        """
    ).fetchone()
    assert days >= 3 and longest_gap_h > 1 and close > 200


def test_agents_and_models_scale(tmp_path: Path) -> None:
    catalog = model_catalog(40)
    assert len(catalog) == len({(p, m) for p, m, _ in catalog}) == 40
    assert all(not isinstance(resolve_model(p, m), str) for p, m, _ in catalog if (p, m) != SELF_HOSTED)
    summary = generate(tmp_path, tasks=600, seed=2, agents=60, models=40, days=1.0)
    con = open_dataset(tmp_path).con
    agents, models, orchestrators = con.execute(
        "SELECT count(DISTINCT agent_name), count(DISTINCT request_model), count(DISTINCT agent_name) FILTER (agent_depth = 0) FROM spans"
    ).fetchone()
    assert agents == 60 and models == 40 and orchestrators == 12
    assert summary.tasks == 600


@pytest.mark.parametrize("kwargs", [{"tasks": 0}, {"agents": 1}, {"models": 0}, {"days": 0}])
def test_bad_arguments(tmp_path: Path, kwargs) -> None:
    with pytest.raises(ValueError, match="required"):
        generate(tmp_path, **{"tasks": 5, "seed": 1, **kwargs})
