"""Live cost metrics: every call the receiver writes, counted once and priced as the analyzer prices it.

    agentmeter_genai_calls_total{agent,model,provider,namespace}                the figure llm_calls
    agentmeter_genai_tokens_total{agent,model,provider,namespace,type}          input, output, cache_read,
                                                                                cache_write, reasoning
    agentmeter_genai_cost_usd_total{agent,model,provider,namespace}             token_cost_usd
    agentmeter_genai_unpriced_calls_total{agent,model,provider,namespace}       calls with usage, no price

Counted after stitching, on the spans the pipeline hands the writer (so after the keep rule and after a
batch sent again was recognised: `Pipeline._stitch`), never at accept: stitching decides `usage_counted`
(a rollup counts only where nothing below reported the call; the same response id twice is one call), so a
call counts here exactly when the analyzer counts it (analyzer/figures.py; `tests/test_cost_metrics.py`
holds the sums equal to `analyze cost` over the same spans). Labels are the analyzer's group keys: agent =
`agent_name` as stitched, model = response model else request model, provider and namespace as sent.

What the receiver cannot know live, and the analyzer does:
- GPU time: a call without a token price is `unpriced` here; the analyzer charges it its GPU busy time
  when the dataset holds the slices its pod held (`gpu_busy_cost_usd`). Without GPU data both agree.
- A trace written in parts (`early_flush`, `shutdown_flush`, `no_root`): each part is stitched alone, so
  only inference spans' usage counts here (a rollup's calls may be in another part); the analyzer
  recomputes the trace over all its parts.
- A response id repeated across traces is recognised within the stitcher's memory (`memory_items`).

Cardinality: the first `top_agents` agents and `top_models` models seen (and `TOP_OTHER` providers and
namespaces) keep their names; later ones are counted under `other`, as the OpenTelemetry metrics SDK's
cardinality limit sends the series past its limit to one overflow series. Sums over labels stay exact.
Counters restart at zero with the process (Prometheus' rate/increase handle the reset).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily

from collector_ext.pricing.live import LivePrices, usd
from collector_ext.schema import INFERENCE_CATEGORIES
from collector_ext.traces.span_refs import SpanRef, row_values
from collector_ext.traces.stitching import SPLIT_STATES

OTHER = "other"
TOP_OTHER = 100  # providers and namespaces: few in practice, bounded all the same
TOKEN_TYPES = ("input", "output", "cache_read", "cache_write", "reasoning")
CALL_COLUMNS = (
    "provider",
    "response_model",
    "request_model",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)
LABELS = ["agent", "model", "provider", "namespace"]


class LabelLimit:
    """The first `limit` distinct values keep their name; the rest become `other` (not thread-safe: the
    caller holds its lock)."""

    def __init__(self, limit: int) -> None:
        self.limit = max(0, limit)
        self.admitted: set[str] = set()

    def __call__(self, value: str | None) -> str:
        if value is None:
            return ""
        if value in self.admitted:
            return value
        if len(self.admitted) < self.limit:
            self.admitted.add(value)
            return value
        return OTHER


@dataclass(slots=True)
class _Sums:
    calls: int = 0
    unpriced: int = 0
    cost_units: int = 0  # 1e-24 USD
    tokens: list[int] = field(default_factory=lambda: [0, 0, 0, 0, 0])


def counted_calls(spans: list[SpanRef]) -> list[SpanRef]:
    """The spans that are calls as the analyzer's `charges` rows count them: usage counted, or an inference
    span that reported no usage at all (a call whose tokens and cost are unknown)."""
    calls = []
    for span in spans:
        if span.usage_counted:
            if span.stitch_state in SPLIT_STATES and span.category not in INFERENCE_CATEGORIES:
                continue  # a rollup in a part of a trace: its calls may be in another part (docstring)
            calls.append(span)
        elif not span.has_usage and span.category in INFERENCE_CATEGORIES:
            calls.append(span)
    return calls


class CostMeter:
    def __init__(self, prices: LivePrices, top_agents: int = 100, top_models: int = 100) -> None:
        self.prices = prices
        self.agents = LabelLimit(top_agents)
        self.models = LabelLimit(top_models)
        self.providers = LabelLimit(TOP_OTHER)
        self.namespaces = LabelLimit(TOP_OTHER)
        self._sums: dict[tuple[str, str, str, str], _Sums] = {}
        self._lock = threading.Lock()

    def count(self, spans: list[SpanRef]) -> None:
        """Count the calls among `spans` (stitched, about to be written)."""
        calls = counted_calls(spans)
        if not calls:
            return
        values = row_values(calls, CALL_COLUMNS)
        priced: list[tuple[SpanRef, tuple, int | None]] = []
        for span, (provider, response_model, request_model, *tokens) in zip(calls, values, strict=True):
            model = response_model or request_model
            counts = [t or 0 for t in tokens]
            cost = self.prices.cost(provider, model, span.start_time, *counts) if span.has_usage else None
            priced.append((span, (provider, model, counts), cost))
        with self._lock:
            for span, (provider, model, counts), cost in priced:
                key = (
                    self.agents(span.agent_name),
                    self.models(model),
                    self.providers(provider),
                    self.namespaces(span.k8s_namespace),
                )
                sums = self._sums.get(key)
                if sums is None:
                    sums = self._sums[key] = _Sums()
                sums.calls += 1
                if not span.has_usage:
                    continue
                for i, count in enumerate(counts):
                    sums.tokens[i] += count
                if cost is None:
                    sums.unpriced += 1
                else:
                    sums.cost_units += cost

    def agent_label(self, agent: str | None) -> str:
        """An agent as the metrics label it (other metrics, e.g. runaway tasks, share the limit)."""
        with self._lock:
            return self.agents(agent)

    def families(self) -> Iterator[CounterMetricFamily]:
        with self._lock:
            rows = [(key, s.calls, s.unpriced, s.cost_units, list(s.tokens)) for key, s in self._sums.items()]
        calls = CounterMetricFamily("agentmeter_genai_calls", "LLM and embedding calls, each once.", labels=LABELS)
        tokens = CounterMetricFamily(
            "agentmeter_genai_tokens",
            "Tokens of the calls counted once: input (cache included), output (reasoning included), cache_read, "
            "cache_write, reasoning.",
            labels=[*LABELS, "type"],
        )
        cost = CounterMetricFamily(
            "agentmeter_genai_cost_usd",
            "Token cost of the calls with a price (genai-prices and --prices, the analyzer's rules), USD.",
            labels=LABELS,
        )
        unpriced = CounterMetricFamily(
            "agentmeter_genai_unpriced_calls",
            "Calls that reported usage but whose model has no token price: cost unknown, never zero.",
            labels=LABELS,
        )
        for key, n_calls, n_unpriced, units, counts in sorted(rows):
            labels = list(key)
            calls.add_metric(labels, n_calls)
            cost.add_metric(labels, usd(units))
            unpriced.add_metric(labels, n_unpriced)
            for kind, count in zip(TOKEN_TYPES, counts, strict=True):
                tokens.add_metric([*labels, kind], count)
        yield from (calls, tokens, cost, unpriced)
