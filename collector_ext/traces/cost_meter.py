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
`agent_name` as stitched, model and provider as `analyze cost --by provider --by model` shows them (the
response model else the request model, resolved: `pricing.rules.resolved_names`), namespace as sent.

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

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from prometheus_client.core import CounterMetricFamily

from collector_ext.pricing.live import PRICED_COLUMNS, LivePrices, shown_names, usd
from collector_ext.schema import INFERENCE_CATEGORIES
from collector_ext.traces.span_refs import SpanRef, pricing_model, row_table
from collector_ext.traces.stitching import SPLIT_STATES

OTHER = "other"
TOP_OTHER = 100  # providers and namespaces: few in practice, bounded all the same
TOKEN_TYPES = ("input", "output", "cache_read", "cache_write", "reasoning")
# the modality parts are priced (parts of input / output), not counters of their own
CALL_COLUMNS = ("provider", "response_model", "request_model", "start_time", *PRICED_COLUMNS)
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


def _labelled(limit: LabelLimit, values: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """Each value's label as a code into the returned names; values are admitted in order of first
    appearance, as one call after the other would be (dictionary encoding keeps that order)."""
    encoded = pc.dictionary_encode(values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values)
    labels = [limit(value) for value in encoded.dictionary.to_pylist()] + [limit(None)]
    names = list(dict.fromkeys(labels))  # few: the admitted names, "other" and "" (so the group keys stay small)
    position = {name: code for code, name in enumerate(names)}
    label_code = np.asarray([position[label] for label in labels], dtype=np.int64)
    codes = encoded.indices.fill_null(len(labels) - 1).to_numpy(zero_copy_only=False).astype(np.int64)
    return label_code[codes], names


def _groups(columns: list[np.ndarray], radices: list[int]) -> tuple[list[list[int]], np.ndarray]:
    """The distinct rows of the code columns (each code < its radix) and each row's group number."""
    key = np.zeros(len(columns[0]), dtype=np.int64)
    for codes, radix in zip(columns, radices, strict=True):
        key = key * radix + codes  # mixed radix: the radices' product is far below 2**63 (labels are bounded)
    distinct, group_of = np.unique(key, return_inverse=True)
    groups = []
    for value in distinct.tolist():
        digits = []
        for radix in reversed(radices):
            value, digit = divmod(value, radix)
            digits.append(digit)
        groups.append(digits[::-1])
    return groups, group_of.reshape(-1)


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
        """Count the calls among `spans` (stitched, about to be written): their columns read as one table,
        priced per (provider, model) and summed per label set in NumPy (no Python step per call but reading
        its ref)."""
        calls = counted_calls(spans)
        if not calls:
            return
        table = row_table(calls, CALL_COLUMNS)
        model = pricing_model(table)
        usage = np.fromiter((span.has_usage for span in calls), dtype=bool, count=len(calls))
        tokens = np.column_stack([pc.fill_null(table.column(c), 0).to_numpy() for c in PRICED_COLUMNS])
        tokens[~usage] = 0  # a call without usage counts as a call only
        start_ns = table.column("start_time").cast(pa.int64()).to_numpy()
        prices = self.prices.locate(table.column("provider"), model, start_ns, tokens[:, 0], usage)
        shown_provider, shown_model = shown_names(table.column("provider"), model)  # labelled as analyze groups
        agents = pa.array([span.agent_name for span in calls], pa.string())
        namespaces = pa.array([span.k8s_namespace for span in calls], pa.string())
        with self._lock:
            labels = [
                _labelled(self.agents, agents),
                _labelled(self.models, shown_model),
                _labelled(self.providers, shown_provider),
                _labelled(self.namespaces, namespaces),
            ]
            # one group per label set and price row: its calls, tokens, unpriced calls and cost
            columns = [codes for codes, _ in labels] + [prices.row + 1]
            radices = [len(names) for _, names in labels] + [len(prices.rows) + 1]
            groups, group_of = _groups(columns, radices)
            calls_in = np.bincount(group_of, minlength=len(groups))
            unpriced_in = np.bincount(group_of, weights=usage & ~prices.priced, minlength=len(groups))
            tokens_in = np.zeros((len(groups), len(PRICED_COLUMNS)), dtype=np.int64)
            np.add.at(tokens_in, group_of, tokens)
            for g, group in enumerate(groups):
                agent, model_label, provider, namespace = (
                    names[code] for (_, names), code in zip(labels, group[:-1], strict=True)
                )
                key = (agent, model_label, provider, namespace)
                row = group[-1] - 1
                sums = self._sums.get(key)
                if sums is None:
                    sums = self._sums[key] = _Sums()
                sums.calls += int(calls_in[g])
                sums.unpriced += int(unpriced_in[g])
                summed = tokens_in[g].tolist()
                for i, count in enumerate(summed[: len(TOKEN_TYPES)]):
                    sums.tokens[i] += count
                if row >= 0:
                    sums.cost_units += prices.rows[row].cost(summed, int(calls_in[g]))

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
            "Calls that reported usage but whose model has no token price: cost unknown, never zero. A self-hosted "
            "model's calls count here; analyze cost prices them by GPU busy time and leaves them out of unpriced_calls.",
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
