"""`analyze cost`: exact costs (Decimal, against genai_prices.calc_price) summed per group, output shapes, errors."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from genai_prices import Usage, calc_price

from analyzer.analysis import Analysis
from analyzer.cli import main
from analyzer.cost import METRICS, CostQuery, cost_rows
from analyzer.dataset import open_dataset
from analyzer.output import money
from collector_ext.schema import SPANS
from collector_ext.storage.dataset_files import DatasetFiles

DAY1 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
DAY2 = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
TRACE_A, TRACE_B, TRACE_C = (bytes([n]) * 16 for n in (0xA1, 0xB2, 0xC3))


def _span(trace: bytes, n: int, *, parent: int | None, at: datetime, agent: str, category: str, **extra) -> dict:
    return {
        "trace_id": trace,
        "span_id": bytes([trace[0], n]) * 4,
        "parent_span_id": bytes([trace[0], parent]) * 4 if parent is not None else None,
        "name": extra.pop("name", f"{category} {n}"),
        "start_time": at,
        "end_time": at + timedelta(seconds=2),
        "category": category,
        "agent_name": agent,
        "service_name": f"{agent}-svc",
        "k8s_namespace": "team-b" if trace == TRACE_C else "team-a",
        "usage_counted": category == "llm",
        "task_id": extra.pop("task_id", trace),
        **extra,
    }


def _llm(trace, n, parent, at, agent, provider, model, usage, **extra) -> dict:
    inp, out, cr, cw = usage
    return _span(
        trace, n, parent=parent, at=at, agent=agent, category="llm", provider=provider, request_model=model,
        response_model=model, input_tokens=inp, output_tokens=out, cache_read_tokens=cr, cache_write_tokens=cw,
        reasoning_tokens=0, response_id=extra.pop("response_id", f"r-{trace[0]}-{n}"), **extra,
    )  # fmt: skip


def _price(provider: str, model: str, usage: tuple[int, int, int, int], at: datetime) -> Decimal:
    inp, out, cr, cw = usage
    u = Usage(input_tokens=inp, output_tokens=out, cache_read_tokens=cr, cache_write_tokens=cw)
    return calc_price(u, model, provider_id=provider, genai_request_timestamp=at).total_price


# The calls of the dataset: (trace, span, parent, time, agent, provider, model, usage)
CALLS = [
    (TRACE_A, 2, 1, DAY1, "orchestrator", "openai", "gpt-4o-2024-08-06", (12_000, 800, 4_000, 0)),
    (TRACE_A, 3, 1, DAY1, "orchestrator", "anthropic", "claude-sonnet-4-5-20250929", (250_000, 2_000, 100_000, 10_000)),
    (
        TRACE_B,
        2,
        1,
        DAY1 + timedelta(minutes=1),
        "researcher",
        "gcp.vertex_ai",
        "gemini-2.5-pro",
        (30_000, 1_500, 0, 0),
    ),
    (TRACE_C, 2, 1, DAY2, "researcher", "openai", "gpt-4o-mini", (5_000, 300, 0, 0)),
]
SELF_HOSTED_USAGE = (7_000, 500, 0, 0)


@pytest.fixture
def dataset(data_dir: Path) -> Path:
    rows = [
        _span(TRACE_A, 1, parent=None, at=DAY1, agent="orchestrator", category="agent", name="invoke_agent orchestrator"),
        _span(TRACE_A, 4, parent=1, at=DAY1, agent="orchestrator", category="tool", tool_name="delegate"),
        _span(TRACE_B, 1, parent=None, at=DAY1 + timedelta(minutes=1), agent="researcher", category="agent",
              name="invoke_agent researcher", task_id=None,
              links=[{"trace_id": TRACE_A, "span_id": bytes([0xA1, 4]) * 4, "attributes": None}]),
        _span(TRACE_C, 1, parent=None, at=DAY2, agent="researcher", category="agent", name="invoke_agent researcher"),
    ]  # fmt: skip
    rows += [_llm(t, n, p, at, agent, prov, model, usage) for t, n, p, at, agent, prov, model, usage in CALLS]
    # a self-hosted model with no price, and the SDK's own duplicate report of call A/2 in trace C
    rows.append(_llm(TRACE_C, 3, 1, DAY2, "researcher", "vllm", "acme-coder-13b", SELF_HOSTED_USAGE))
    rows.append(
        _llm(TRACE_C, 4, 1, DAY2, "researcher", "openai", "gpt-4o-2024-08-06", CALLS[0][7], response_id="r-161-2")
    )  # fmt: skip
    DatasetFiles(data_dir, "test").write("spans", pa.Table.from_pylist(rows, schema=SPANS))
    return data_dir


def _expected_by(key) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for call in CALLS:
        totals[key(call)] = totals.get(key(call), Decimal(0)) + _price(call[5], call[6], call[7], call[3])
    return totals


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["cost", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cost_by_agent_is_decimal_exact(dataset: Path) -> None:
    result = cost_rows(Analysis.open(dataset), CostQuery(by=["agent"]))
    rows, prices = result.rows, result.prices
    expected = _expected_by(lambda c: c[4])
    assert {r["agent"]: r["token_cost_usd"] for r in rows} == expected
    assert {r["agent"]: r["total_cost_usd"] for r in rows} == expected  # no GPU: total = tokens
    researcher = next(r for r in rows if r["agent"] == "researcher")
    # the duplicate report counts once; the self-hosted call is counted, unpriced, not zero
    assert researcher["llm_calls"] == 3 and researcher["unpriced_calls"] == 1
    assert researcher["input_tokens"] == 30_000 + 5_000 + 7_000
    assert prices.unpriced == {("vllm", "acme-coder-13b"): "unknown provider"}


def test_json_by_model_and_day(dataset: Path, capsys) -> None:
    code, out, _ = _run(capsys, "--data", str(dataset), "--by", "model", "--by", "day", "--format", "json")
    assert code == 0
    rows = json.loads(out)
    assert all(list(r) == ["model", "day", *METRICS] for r in rows)
    expected = _expected_by(lambda c: (c[6], c[3].date().isoformat()))
    got = {(r["model"], r["day"]): r["token_cost_usd"] for r in rows if r["token_cost_usd"] is not None}
    assert got == {k: float(v) for k, v in expected.items()}
    assert [r["day"] for r in rows] == sorted(r["day"] for r in rows)  # time order
    unpriced = [r for r in rows if r["token_cost_usd"] is None]
    assert unpriced == [
        {"model": "acme-coder-13b", "day": "2026-11-03", "llm_calls": 1, "input_tokens": 7000, "output_tokens": 500,
         "cache_read_tokens": 0, "cache_write_tokens": 0, "reasoning_tokens": 0, "unpriced_calls": 1,
         "calls_without_usage": 0, "token_cost_usd": None, "gpu_busy_cost_usd": 0.0, "total_cost_usd": None,
         "reported_cost_usd": None}
    ]  # fmt: skip


def test_csv_shape_and_where_filters(dataset: Path, capsys) -> None:
    code, out, _ = _run(
        capsys, "--data", str(dataset), "--by", "namespace", "--where", "agent=researcher", "--format", "csv"
    )
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert out.splitlines()[0] == ",".join(["namespace", *METRICS])
    assert [(r["namespace"], r["llm_calls"], r["unpriced_calls"]) for r in rows] == [
        ("team-a", "1", "0"),
        ("team-b", "2", "1"),
    ]
    assert Decimal(rows[0]["token_cost_usd"]) == Decimal(repr(float(_price(*CALLS[2][5:8], CALLS[2][3]))))


def test_since_until_and_top(dataset: Path, capsys) -> None:
    code, out, _ = _run(capsys, "--data", str(dataset), "--by", "provider", "--since", "2026-11-03", "--format", "json")
    assert code == 0 and [(r["provider"], r["llm_calls"]) for r in json.loads(out)] == [("openai", 1), ("vllm", 1)]
    code, out, _ = _run(
        capsys, "--data", str(dataset), "--by", "agent", "--until", "2026-11-03", "--top", "1", "--format", "json"
    )
    assert code == 0 and [(r["agent"], r["llm_calls"]) for r in json.loads(out)] == [("orchestrator", 2)]


def test_task_direct_and_inclusive(dataset: Path) -> None:
    analysis = Analysis.open(dataset)
    direct = {r["task"]: r for r in cost_rows(analysis, CostQuery(by=["task"], direct=True)).rows}
    inclusive = {r["task"]: r for r in cost_rows(analysis, CostQuery(by=["task"])).rows}  # the default
    a, c = TRACE_A.hex(), TRACE_C.hex()
    own_a = _price(*CALLS[0][5:8], DAY1) + _price(*CALLS[1][5:8], DAY1)
    sub_b = _price(*CALLS[2][5:8], CALLS[2][3])
    assert set(direct) == {a, c} and set(inclusive) == {a, c}  # trace B is a sub-agent of task A, not a task
    assert direct[a]["direct_cost_usd"] == own_a and direct[a]["llm_calls"] == 2
    assert inclusive[a]["inclusive_cost_usd"] == own_a + sub_b and inclusive[a]["llm_calls"] == 3
    assert direct[c]["direct_cost_usd"] == inclusive[c]["inclusive_cost_usd"] == _price(*CALLS[3][5:8], DAY2)


def test_table_has_totals_and_reports_unpriced(dataset: Path, capsys) -> None:
    code, out, _ = _run(capsys, "--data", str(dataset), "--by", "agent")
    assert code == 0
    total = sum(_expected_by(lambda c: c[4]).values())
    assert "total" in out and money(total) in out
    assert "1 unpriced calls (no price for vllm/acme-coder-13b (unknown provider))" in out


def test_price_file_prices_the_self_hosted_model(dataset: Path, tmp_path: Path, capsys) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text("prices:\n  - provider: vllm\n    model: acme-coder-13b\n    input: 1\n    output: 2\n")
    code, out, _ = _run(
        capsys,
        "--data",
        str(dataset),
        "--by",
        "model",
        "--where",
        "provider=vllm",
        "--prices",
        str(prices),
        "--format",
        "json",
    )
    assert code == 0
    assert [(r["model"], r["token_cost_usd"], r["unpriced_calls"]) for r in json.loads(out)] == [
        ("acme-coder-13b", 0.008, 0)
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "{missing}", "--by", "agent"], "error: no dataset at"),
        (["--data", "{data}", "--by", "colour"], "error: unknown --by key 'colour'"),
        (["--data", "{data}", "--by", "agent", "--since", "last tuesday"], "error: bad time 'last tuesday'"),
        (["--data", "{data}", "--by", "agent", "--where", "agent"], "error: bad --where 'agent'"),
        (["--data", "{data}", "--by", "agent", "--where", "team=x"], "error: unknown --where key 'team'"),
        (["--data", "{data}", "--by", "agent", "--prices", "{missing}"], "error: cannot read price file"),
        (["--data", "{data}", "--by", "agent", "--prices", "{bad_prices}"], "error: price file"),
        (["--data", "{data}", "--by", "agent", "--top", "0"], "error: Invalid value for '--top'"),
    ],
)
def test_errors_are_one_line_and_non_zero(dataset: Path, tmp_path: Path, capsys, args, message) -> None:
    bad_prices = tmp_path / "bad.yaml"
    bad_prices.write_text("prices:\n  - model: x\n    input: free\n    output: 1\n")
    paths = {"data": str(dataset), "missing": str(tmp_path / "missing"), "bad_prices": str(bad_prices)}
    code, out, err = _run(capsys, *(a.format(**paths) for a in args))
    assert code == 2 and out == ""
    assert err.startswith(message) and len(err.strip().splitlines()) == 1, err


def test_the_installed_command_runs(dataset: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "analyzer.cli", "cost", "--data", str(dataset), "--by", "agent", "--format", "json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert {r["agent"]: r["llm_calls"] for r in json.loads(done.stdout)} == {"orchestrator": 2, "researcher": 3}


def test_self_hosted_calls_are_priced_by_gpu_time(data_dir: Path, capsys) -> None:
    from analyzer.gpu import install_gpu_costs
    from analyzer.gpu_synthetic import synthetic_gpu

    synthetic_gpu(data_dir, slices=3, days=1, spans=200, seed=4)
    con = open_dataset(data_dir).con
    install_gpu_costs(con)
    expected = {
        ns: (gpu or 0.0, unpriced)
        for ns, gpu, unpriced in con.execute(
            """
            SELECT s.k8s_namespace, round(sum(g.gpu_cost_usd)::DOUBLE, 9),
                   count(*) FILTER (WHERE g.span_id IS NULL AND c.counted)
            FROM counted_spans AS s
            LEFT JOIN span_gpu_costs AS g ON g.trace_id = s.trace_id AND g.span_id = s.span_id
            JOIN counted_spans AS c ON c.trace_id = s.trace_id AND c.span_id = s.span_id
            WHERE c.counted OR g.span_id IS NOT NULL
            GROUP BY ALL
            """
        ).fetchall()
    }
    code, out, _ = _run(capsys, "--data", str(data_dir), "--by", "namespace", "--format", "json")
    assert code == 0
    rows = json.loads(out)
    assert {r["namespace"]: (round(r["gpu_busy_cost_usd"], 9), r["unpriced_calls"]) for r in rows} == expected
    assert all(r["token_cost_usd"] is None for r in rows) and sum(r["gpu_busy_cost_usd"] for r in rows) > 0
    assert all(r["total_cost_usd"] == r["gpu_busy_cost_usd"] for r in rows if r["gpu_busy_cost_usd"])


def test_time_buckets_in_time_order_and_labels(tmp_path: Path, capsys) -> None:
    from analyzer.synthetic import COST_CENTERS, NAMESPACES, TEAMS, generate

    root = tmp_path / "data"
    generate(root, tasks=200, seed=6, days=70)  # November 2026 into January 2027: weeks and months
    days = json.loads(_run(capsys, "--data", str(root), "--by", "day", "--format", "json")[1])
    weeks = json.loads(_run(capsys, "--data", str(root), "--by", "week", "--format", "json")[1])
    months = json.loads(_run(capsys, "--data", str(root), "--by", "month", "--format", "json")[1])
    for rows, key, pattern in (
        (days, "day", r"\d{4}-\d\d-\d\d"),
        (weeks, "week", r"\d{4}-W\d\d"),
        (months, "month", r"\d{4}-\d\d"),
    ):
        assert [r[key] for r in rows] == sorted(r[key] for r in rows) and len(rows) > 1  # time order, not cost
        assert all(re.fullmatch(pattern, r[key]) for r in rows)
        assert sum(r["llm_calls"] for r in rows) == sum(r["llm_calls"] for r in days)
    assert [m["month"] for m in months] == ["2026-11", "2026-12", "2027-01"]
    top = json.loads(_run(capsys, "--data", str(root), "--by", "week", "--top", "2", "--format", "json")[1])
    costliest = sorted(weeks, key=lambda r: -r["total_cost_usd"])[:2]
    assert top == sorted(costliest, key=lambda r: r["week"])  # the 2 most expensive weeks, in time order
    # a pod label the Collector added (agent.team), one by its k8sattributes default name (cost-center)
    teams = json.loads(
        _run(capsys, "--data", str(root), "--by", "label:team", "--by", "namespace", "--format", "json")[1]
    )
    assert {(r["namespace"], r["label:team"]) for r in teams} == set(zip(NAMESPACES, TEAMS, strict=True))
    centres = json.loads(_run(capsys, "--data", str(root), "--by", "label:cost-center", "--format", "json")[1])
    assert {r["label:cost-center"] for r in centres} == set(COST_CENTERS)
    only = json.loads(
        _run(capsys, "--data", str(root), "--by", "agent", "--where", "label:team=search", "--format", "json")[1]
    )
    assert sum(r["llm_calls"] for r in only) == sum(r["llm_calls"] for r in teams if r["label:team"] == "search")


def test_a_missing_label_groups_as_null(dataset: Path, capsys) -> None:
    rows = json.loads(_run(capsys, "--data", str(dataset), "--by", "label:team", "--format", "json")[1])
    assert [(r["label:team"], r["llm_calls"]) for r in rows] == [(None, 5)]  # 4 calls, the self-hosted one
    code, _, err = _run(capsys, "--data", str(dataset), "--by", "label:")
    assert code == 2 and err.startswith("error: bad --by key 'label:': name the attribute, e.g. label:team")
