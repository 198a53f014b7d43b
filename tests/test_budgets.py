"""Budgets (analyzer/budgets.py, `analyze budget`): spend, burn rate, forecast and breach dates exact on a
constructed spend; exit code 3; the emitted PrometheusRule parsed by a real PromQL parser and validated
against the CRD's schema; deploy/ ships exactly what the generator writes for its budgets file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import promql_parser
import pyarrow as pa
import pytest
import yaml
from crd_schemas import validate_custom_resource

from analyzer.analysis import Analysis
from analyzer.budgets import Budget, budget_status, load_budgets, prometheus_rules
from analyzer.cli import main
from analyzer.dataset import AnalyzerError
from collector_ext.schema import SPANS
from collector_ext.storage.dataset_files import DatasetFiles

ROOT = Path(__file__).resolve().parent.parent
PRICES = (
    "prices:\n  - provider: vllm\n    model: acme-13b\n    input: 1000\n    output: 0\n"  # $1 per 1000 input tokens
)
NOV = datetime(2026, 11, 1, tzinfo=UTC)


def call(n: int, at: datetime, agent: str, namespace: str, dollars: int, team: str | None = None) -> dict:
    trace = n.to_bytes(16, "big")
    return {
        "trace_id": trace, "span_id": n.to_bytes(8, "big"), "name": "chat acme-13b", "start_time": at,
        "end_time": at + timedelta(seconds=1), "category": "llm", "agent_name": agent, "service_name": agent,
        "k8s_namespace": namespace, "provider": "vllm", "request_model": "acme-13b", "response_model": "acme-13b",
        "input_tokens": 1000 * dollars, "output_tokens": 10, "usage_counted": True, "task_id": trace,
        "response_id": f"r{n}", "attributes": {"team": team} if team else None,
    }  # fmt: skip


@pytest.fixture
def spend(data_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """$3 a day for research-planner (namespace research, team search) at noon, Nov 1-10; $7 once for
    support-triage on Nov 10 at 06:00; one call of research-planner in October (another period)."""
    rows = [call(day, NOV + timedelta(days=day - 1, hours=12), "research-planner", "research", 3, "search")
            for day in range(1, 11)]  # fmt: skip
    rows.append(call(50, NOV + timedelta(days=9, hours=6), "support-triage", "support", 7))
    rows.append(call(60, NOV - timedelta(days=2), "research-planner", "research", 100))
    DatasetFiles(data_dir, "test").write("spans", pa.Table.from_pylist(rows, schema=SPANS))
    prices = tmp_path / "prices.yaml"
    prices.write_text(PRICES)
    return data_dir, prices


def status(spend: tuple[Path, Path], scope: str, period: str, amount: int, at: datetime):
    budget = Budget(scope=scope, period=period, amount_usd=Decimal(amount))
    return budget_status(Analysis.open(spend[0], spend[1]), budget, at)


def test_forecast_is_exact_on_constructed_spend(spend) -> None:
    at = datetime(2026, 11, 11, tzinfo=UTC)  # ten of November's thirty days
    month = status(spend, "agent=research-planner", "month", 100, at)
    assert (month.period_start, month.period_end) == (NOV, datetime(2026, 12, 1, tzinfo=UTC))
    assert month.spend_usd == Decimal(30)  # October's call is another period
    assert month.burn_rate_usd_per_day == Decimal(3)
    assert month.forecast_usd == Decimal(90) and month.status == "ok"
    over = status(spend, "agent=research-planner", "month", 80, at)
    # $30 in 10 days reaches $80 after 26 2/3 days: Nov 27, 16:00
    assert over.status == "forecast_breach" and over.forecast_breach_at == datetime(2026, 11, 27, 16, tzinfo=UTC)
    breached = status(spend, "label:team=search", "month", 25, at)
    # the 9th $3 call (Nov 9, noon) takes the spend to $27, past $25
    assert breached.status == "breached" and breached.breached_at == datetime(2026, 11, 9, 12, tzinfo=UTC)
    day = status(spend, "namespace=support", "day", 10, datetime(2026, 11, 10, 18, tzinfo=UTC))
    # $7 in the day's first 18 hours: $9.333.../day, forecast 7 x 24/18
    assert day.spend_usd == Decimal(7) and day.forecast_usd == Decimal(7) * 24 / 18 and day.status == "ok"
    assert day.burn_rate_usd_per_day == Decimal(7) * 24 / 18
    nothing = status(spend, "namespace=sandbox", "day", 10, datetime(2026, 11, 10, 18, tzinfo=UTC))
    assert (nothing.spend_usd, nothing.forecast_usd, nothing.status) == (0, 0, "ok")


def test_budget_cli_exits_3_when_over(spend, tmp_path: Path, capsys) -> None:
    data, prices = spend
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text(
        "budgets:\n"
        "  - {name: planner, scope: agent=research-planner, period: month, amount_usd: 100}\n"
        "  - {scope: namespace=support, period: month, amount_usd: 20}\n"
    )
    args = ["budget", "--budgets", str(budgets), "--data", str(data), "--prices", str(prices), "--format", "json"]
    assert main([*args, "--at", "2026-11-11"]) == 3  # support: $7 in 10 days, $21 forecast for the month
    rows = json.loads(capsys.readouterr().out)
    assert [(r["budget"], r["spend_usd"], r["forecast_usd"], r["status"]) for r in rows] == [
        ("planner", 30.0, 90.0, "ok"),
        ("namespace=support per month", 7.0, 21.0, "forecast_breach"),
    ]
    assert rows[1]["forecast_breach_at"] == "2026-11-29T13:42:51.428571+00:00"  # 10 d x 13/7 after Nov 11
    budgets.write_text("budgets:\n  - {scope: namespace=support, period: month, amount_usd: 25}\n")
    assert main([*args, "--at", "2026-11-11"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["status"] == "ok"


def test_bad_budget_files_are_one_line(tmp_path: Path, capsys) -> None:
    cases = {
        "budgets: []\n": "budgets: List should have at least 1 item",
        "budgets:\n  - {scope: team=search, period: day, amount_usd: 5}\n": "use agent=NAME, namespace=NAME",
        "budgets:\n  - {scope: agent=a, period: week, amount_usd: 5}\n": "budgets.0.period",
        "budgets:\n  - {scope: agent=a, period: day, amount_usd: -5}\n": "greater than 0",
        "budgets:\n  - {scope: agent=a, period: day, amount_usd: 5, extra: 1}\n": "budgets.0.extra",
        "budgets:\n  - {scope: agent=a, period: day, amount_usd: 5}\n  - {scope: agent=a, period: day, amount_usd: 6}\n": (
            "named twice"
        ),
    }
    for text, message in cases.items():
        path = tmp_path / "b.yaml"
        path.write_text(text)
        with pytest.raises(AnalyzerError, match=message):
            load_budgets(path)
        assert main(["budget", "--budgets", str(path), "--emit", "prometheus-rules"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: budgets file") and err.count("\n") == 1
        # the console's Budgets page reads the same file: a bad one stops `analyze serve` before it listens
        assert main(["serve", "--budgets", str(path), "--data", str(tmp_path / "data"), "--port", "0"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: budgets file") and err.count("\n") == 1


def test_emitted_rules_parse_and_validate() -> None:
    budgets = [
        Budget(name="planner daily", scope="agent=research-planner", period="day", amount_usd=Decimal(30)),
        Budget(scope='namespace=su"pport', period="month", amount_usd=Decimal(720)),
        Budget(scope="label:team=search", period="month", amount_usd=Decimal(100)),
    ]
    doc, skipped = prometheus_rules(budgets)
    validate_custom_resource(doc)
    assert skipped == [budgets[2]]
    (group,) = doc["spec"]["groups"]
    rules = {rule["alert"]: rule for rule in group["rules"]}
    assert len(rules) == 2 + 4
    for rule in rules.values():
        expr = promql_parser.parse(rule["expr"])
        assert isinstance(expr, promql_parser.BinaryExpr) and str(expr.op) == "and"
    page = rules["AgentmeterBudgetBurnPlannerDaily1h"]
    # $30/day even rate = 30/86400 USD/s; x12 over 1h and 5m
    assert page["expr"] == (
        'sum(rate(agentmeter_genai_cost_usd_total{agent="research-planner"}[1h])) > 0.00416666666667 and '
        'sum(rate(agentmeter_genai_cost_usd_total{agent="research-planner"}[5m])) > 0.00416666666667'
    )
    assert page["labels"]["severity"] == "critical"
    month = [r for name, r in rules.items() if "Namespace" in name]
    assert [r["labels"]["long_window"] for r in month] == ["1h", "6h", "1d", "3d"]
    # $720/month = $1/h: the workbook's 14.4, 6, 3, 1
    thresholds = [float(r["expr"].split(" > ")[1].split(" ")[0]) for r in month]
    assert thresholds == pytest.approx([14.4 / 3600, 6 / 3600, 3 / 3600, 1 / 3600])
    assert 'namespace="su\\"pport"' in month[0]["expr"]
    broken = json.loads(json.dumps(doc))
    broken["spec"]["groups"][0]["rules"][0].pop("expr")
    with pytest.raises(Exception, match="'expr' is a required"):
        validate_custom_resource(broken)


def test_deploy_ships_the_generated_rules(capsys) -> None:
    assert main(["budget", "--budgets", str(ROOT / "deploy/budgets/budgets.yaml"), "--emit", "prometheus-rules"]) == 0
    assert capsys.readouterr().out == (ROOT / "deploy/base/budget-alerts.yaml").read_text()
    shipped = yaml.safe_load((ROOT / "deploy/base/budget-alerts.yaml").read_text())
    assert len(shipped["spec"]["groups"][0]["rules"]) == 2 + 4 + 4


def test_report_has_the_budget_section(spend, tmp_path: Path) -> None:
    data, prices = spend
    from analyzer.report import build_report

    budgets = [Budget(name="planner", scope="agent=research-planner", period="month", amount_usd=Decimal(80))]
    page = build_report(Analysis.open(data, prices), budgets, datetime(2026, 11, 11, tzinfo=UTC))
    row = page[page.index("<td>planner</td>") :].split("</tr>")[0]
    # the same figures `analyze budget` gives: $30 spent, $3/day, $90 forecast, breach forecast Nov 27 16:00
    assert row == (
        "<td>planner</td><td>agent=research-planner</td><td>month</td><td>$80.00</td><td>$30.00</td>"
        "<td>$3.00</td><td>$90.00</td><td>forecast_breach</td><td>2026-11-27 16:00</td>"
    )
    section = page[page.index("<h2>Runaway tasks</h2>") :].split("</section>")[0]
    # the $100 (October) and $7 calls are tasks past the $5 cost threshold, as `analyze runaway` lists them
    assert section.count("<td>cost_usd</td>") == 2
    assert "<td>cost_usd</td><td>100</td><td>5 (threshold)</td>" in section
    assert "<td>cost_usd</td><td>7</td><td>5 (threshold)</td>" in section
