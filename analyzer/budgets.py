"""Budgets: spend per agent, namespace or label against an amount per UTC day or month, with a forecast.

The budgets file (YAML, validated by pydantic)::

    budgets:
      - name: research-daily             # optional: default "<scope> per <period>"
        scope: agent=research-planner    # agent=NAME, namespace=NAME or label:KEY=VALUE (as --where)
        period: day                      # day or month, in UTC
        amount_usd: 25
      - scope: label:team=search
        period: month
        amount_usd: 1200

For each budget, as of `at` (default now): `spend_usd` = the figure total_cost_usd (analyzer/figures.py:
tokens + GPU, a call charged once) of the calls in scope since the period began; `burn_rate_usd_per_day` =
spend / time elapsed; `forecast_usd` = spend + burn rate x time left (the period's spend at its average
rate so far); `breached_at` = the start of the call that took the spend past the amount; else
`forecast_breach_at` = when the burn rate reaches the amount (if before the period ends). `status`:
`breached`, `forecast_breach` or `ok`; `analyze budget` exits 3 when any budget is not ok.

Alerts while it happens: `prometheus_rules` turns the budgets into a PrometheusRule of multi-window,
multi-burn-rate alerts over the receivers' live `agentmeter_genai_cost_usd_total` (the SRE workbook's
"Alerting on SLOs" pattern, the budget standing for the error budget): an alert fires when the spend rate
over BOTH a long and a short window is past `factor` x the budget's even rate (amount / period). The long
window makes it significant, the short one makes it stop soon after the spend does. Windows and factors
(`BURN_WINDOWS`): for a month, the workbook's own (1h/5m x14.4 and 6h/30m x6 page: 2 % and 5 % of the
budget gone; 1d/2h x3 and 3d/6h x1 ticket: 10 %); for a day, the 1h/5m and 6h/30m windows at factors that
fire when half the day's budget is gone (x12 in 1h, x2 in 6h): a month's 1d and 3d windows exceed a day.
The live counters hold token cost only (GPU time is charged by the analyzer), and carry the labels agent
and namespace: a label:KEY budget gets no rule (its scope is not a label of the live metrics).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from analyzer.analysis import Analysis
from analyzer.cost import LABEL_PREFIX, where_sql
from analyzer.dataset import AnalyzerError, read_yaml_file
from analyzer.figures import BY_NAME

Period = Literal["day", "month"]
SCOPE_KEYS = ("agent", "namespace")
COST_METRIC = "agentmeter_genai_cost_usd_total"
DAY = timedelta(days=1)


@dataclass(frozen=True)
class BurnWindow:
    long: str  # Prometheus durations
    short: str
    factor: float  # x the budget's even rate (amount / period)
    severity: str


BURN_WINDOWS: dict[str, tuple[BurnWindow, ...]] = {
    "month": (
        BurnWindow("1h", "5m", 14.4, "critical"),
        BurnWindow("6h", "30m", 6, "critical"),
        BurnWindow("1d", "2h", 3, "warning"),
        BurnWindow("3d", "6h", 1, "warning"),
    ),
    "day": (BurnWindow("1h", "5m", 12, "critical"), BurnWindow("6h", "30m", 2, "warning")),
}


class Budget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(None, description="Shown in reports and alerts; default '<scope> per <period>'.")
    scope: str = Field(description="agent=NAME, namespace=NAME or label:KEY=VALUE (as analyze cost --where).")
    period: Period = Field(description="day or month (UTC).")
    amount_usd: Decimal = Field(gt=0, description="USD per period.")

    @field_validator("scope")
    @classmethod
    def _scope(cls, value: str) -> str:
        key, sep, wanted = value.partition("=")
        key = key.strip()
        label = key.startswith(LABEL_PREFIX) and key[len(LABEL_PREFIX) :].strip()
        if not sep or not wanted or not (key in SCOPE_KEYS or label):
            raise ValueError(f"scope {value!r}: use agent=NAME, namespace=NAME or label:KEY=VALUE")
        return f"{key}={wanted}"

    @property
    def key(self) -> str:
        return self.scope.partition("=")[0]

    @property
    def value(self) -> str:
        return self.scope.partition("=")[2]

    @property
    def title(self) -> str:
        return self.name or f"{self.scope} per {self.period}"


class BudgetFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    budgets: list[Budget] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> BudgetFile:
        titles = [b.title for b in self.budgets]
        twice = sorted({t for t in titles if titles.count(t) > 1})
        if twice:
            raise ValueError(f"budget {twice[0]!r} is named twice")
        return self


def load_budgets(path: Path) -> list[Budget]:
    """The budgets file; any problem is one AnalyzerError line naming where."""
    doc = read_yaml_file(path, "budgets file")
    try:
        return BudgetFile.model_validate(doc).budgets
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the file"
        raise AnalyzerError(f"budgets file {path}: {where}: {first['msg'].removeprefix('Value error, ')}") from None


def period_bounds(period: Period, at: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the UTC day or month holding `at`."""
    at = at.astimezone(UTC)
    if period == "day":
        start = at.replace(hour=0, minute=0, second=0, microsecond=0)
        return start, start + DAY
    start = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


@dataclass(frozen=True)
class BudgetStatus:
    budget: Budget
    at: datetime
    period_start: datetime
    period_end: datetime
    spend_usd: Decimal
    burn_rate_usd_per_day: Decimal
    forecast_usd: Decimal
    breached_at: datetime | None
    forecast_breach_at: datetime | None

    @property
    def status(self) -> str:
        if self.breached_at is not None:
            return "breached"
        return "forecast_breach" if self.forecast_breach_at is not None else "ok"

    def row(self) -> dict[str, Any]:
        return {
            "budget": self.budget.title,
            "scope": self.budget.scope,
            "period": self.budget.period,
            "period_start": self.period_start,
            "amount_usd": self.budget.amount_usd,
            "spend_usd": self.spend_usd,
            "burn_rate_usd_per_day": self.burn_rate_usd_per_day,
            "forecast_usd": self.forecast_usd,
            "status": self.status,
            "breached_at": self.breached_at,
            "forecast_breach_at": self.forecast_breach_at,
        }


COLUMNS = [
    "budget", "scope", "period", "period_start", "amount_usd", "spend_usd", "burn_rate_usd_per_day",
    "forecast_usd", "status", "breached_at", "forecast_breach_at",
]  # fmt: skip


def budget_status(analysis: Analysis, budget: Budget, at: datetime) -> BudgetStatus:
    """Spend so far in the budget's period as of `at`, burn rate, forecast and breach dates."""
    analysis.install_charges()
    start, end = period_bounds(budget.period, at)
    params: dict[str, Any] = {"since": start, "until": at, "amount": budget.amount_usd}
    filters = " AND ".join(where_sql({budget.key: budget.value}, params))
    total = BY_NAME["total_cost_usd"].aggregate
    sql = f"""
        WITH calls AS (
            SELECT c.start_time, c.total_cost_usd,
                   sum(c.total_cost_usd) OVER (ORDER BY c.start_time, c.trace_id, c.span_id) AS spent
            FROM charges AS c
            WHERE c.start_time >= $since::TIMESTAMPTZ AND c.start_time < $until::TIMESTAMPTZ AND {filters}
        )
        SELECT (SELECT {total} FROM calls AS c),
               (SELECT min(start_time) FROM calls WHERE spent >= $amount)
    """  # noqa: S608 (fixed figure expression, bound filters)
    row = analysis.con.execute(sql, params).fetchone()
    assert row is not None
    spend = Decimal(row[0] or 0)
    breached_at = row[1]
    elapsed = _us(at - start)  # integer microseconds: the forecast is exact Decimal arithmetic
    rate_per_day = spend * _us(DAY) / elapsed if elapsed else Decimal(0)
    forecast = spend * _us(end - start) / elapsed if elapsed else spend
    forecast_breach_at = None
    if breached_at is None and forecast > budget.amount_usd and spend > 0:
        # when the spend, at its rate so far, reaches the amount
        wait = elapsed * (budget.amount_usd - spend) / spend
        forecast_breach_at = at + timedelta(microseconds=int(wait.to_integral_value()))
    return BudgetStatus(budget, at, start, end, spend, rate_per_day, forecast, breached_at, forecast_breach_at)


def _us(span: timedelta) -> Decimal:
    return Decimal(span // timedelta(microseconds=1))


# -- PrometheusRule ----------------------------------------------------------------------------------------

PERIOD_SECONDS = {"day": 86_400, "month": 30 * 86_400}  # a month's even rate over 30 days, as the workbook's SLO


def rule_name(text: str) -> str:
    """A name for alerts: 'research-planner per day' -> 'ResearchPlannerPerDay'."""
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", text) if part)


def _selector(budget: Budget) -> str:
    value = budget.value.replace("\\", "\\\\").replace('"', '\\"')
    return f'{COST_METRIC}{{{budget.key}="{value}"}}'


def burn_expr(budget: Budget, window: BurnWindow) -> str:
    """Spend rate over the long and the short window, both past factor x the budget's even rate (USD/s)."""
    threshold = float(budget.amount_usd) / PERIOD_SECONDS[budget.period] * window.factor
    rate = "sum(rate({selector}[{w}])) > {t:.12g}"
    selector = _selector(budget)
    return (
        rate.format(selector=selector, w=window.long, t=threshold)
        + " and "
        + rate.format(selector=selector, w=window.short, t=threshold)
    )


def prometheus_rules(budgets: list[Budget], name: str = "agentmeter-budgets") -> tuple[dict, list[Budget]]:
    """A PrometheusRule (monitoring.coreos.com/v1) with the burn-rate alerts of each budget the live metrics
    can scope, and the budgets left out (label scopes)."""
    rules = []
    skipped = []
    for budget in budgets:
        if budget.key not in SCOPE_KEYS:
            skipped.append(budget)
            continue
        for window in BURN_WINDOWS[budget.period]:
            share = window.factor * _seconds(window.long) / PERIOD_SECONDS[budget.period]
            rules.append(
                {
                    "alert": f"AgentmeterBudgetBurn{rule_name(budget.title)}{window.long}",
                    "expr": burn_expr(budget, window),
                    "labels": {
                        "severity": window.severity,
                        "budget": budget.title,
                        budget.key: budget.value,
                        "long_window": window.long,
                    },
                    "annotations": {
                        "summary": f"Budget {budget.title} (${budget.amount_usd} per {budget.period}) burning "
                        f"{window.factor:g}x its even rate over {window.long} and {window.short}",
                        "description": f"{budget.scope}: at this rate {share:.0%} of the {budget.period}'s budget "
                        f"goes in {window.long}; `analyze budget` gives the spend so far and the forecast.",
                    },
                }
            )
    doc = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "agentmeter"}},
        "spec": {"groups": [{"name": "agentmeter-budgets", "rules": rules}]},
    }
    return doc, skipped


def _seconds(duration: str) -> int:
    number, unit = int(duration[:-1]), duration[-1]
    return number * {"m": 60, "h": 3600, "d": 86_400}[unit]
