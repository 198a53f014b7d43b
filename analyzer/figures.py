"""The figures every view shows (CLI table/JSON/CSV, report, API, notebooks), each defined once, here.

Every figure is an aggregate over the rows of the `charges` view (`analyzer/sql/charges.sql`): one row per
LLM call (a counted usage record, `counted_spans.sql`, or an inference span that reported no usage), plus
one row per other inference span charged GPU time. A query groups `charges` rows (by agent, task, day, label, ...)
and selects `FIGURE_SELECT`; nothing else computes these numbers.

- `llm_calls`: LLM (and embedding) calls, each once: every call whose usage counts (a response id reported
  twice is one call; a rollup span that reports usage nothing below it reported counts as one), and every
  inference span that reported no usage at all (a call whose tokens and cost are unknown).
- tokens: input (includes cache read/write), output (includes reasoning), cache read, cache write, reasoning.
- `unpriced_calls`: calls that reported usage but have neither a token price nor GPU time: their cost is
  unknown (never zero). A call priced by GPU time is never unpriced.
- `calls_without_usage`: calls (in `llm_calls`) that reported no usage at all: their tokens and token cost
  are unknown, never zero (an instrumentation that sends none, a stream whose usage was never read); the
  cost figures leave them out (a group made only of them has no token cost: NULL). Charged GPU time where
  their pod held a GPU slice, like any call without a token price.
- `token_cost_usd`: the calls with a token price (genai-prices, or the user's `--prices` file); NULL
  (shown `-`) when no call of the group has one.
- `gpu_busy_cost_usd`: the calls' share of the busy time of the GPU slices their pods held, times the slice's
  price (`analyzer/gpu.py`); only for calls without a token price (the charging rule below); 0 without GPU.
  Not to be confused with `analyze gpu`'s `allocated_cost_usd` (slice-hours held, idle included),
  `busy_cost_usd` and `idle_cost_usd`, which count slice time whoever used it.
- `total_cost_usd` = `token_cost_usd` + `gpu_busy_cost_usd`; NULL only when the group has neither.
- `reported_cost_usd`: the provider-reported cost where spans carried one; NULL when none did.

The charging rule (a call is charged once): a call whose model has a token price is charged by its tokens,
and its share of GPU busy time is not charged again; a call without a token price is charged its GPU busy
time (self-hosted inference), else it is unpriced. So a self-hosted model added to a `--prices` file is
charged by tokens from then on, and `gpu_busy_cost_usd` drops by what its calls' GPU time cost.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    name: str
    aggregate: str  # SQL over `charges` rows (or rows with the same columns)
    description: str

    @property
    def money(self) -> bool:
        return self.name.endswith("_usd")


FIGURES: tuple[Figure, ...] = (
    Figure("llm_calls", "coalesce(sum(llm_calls), 0)::BIGINT", "LLM calls, each once (with or without usage)"),
    Figure("input_tokens", "coalesce(sum(input_tokens), 0)::BIGINT", "input tokens, cache tokens included"),
    Figure("output_tokens", "coalesce(sum(output_tokens), 0)::BIGINT", "output tokens, reasoning included"),
    Figure("cache_read_tokens", "coalesce(sum(cache_read_tokens), 0)::BIGINT", "input tokens read from a cache"),
    Figure("cache_write_tokens", "coalesce(sum(cache_write_tokens), 0)::BIGINT", "input tokens written to a cache"),
    Figure("reasoning_tokens", "coalesce(sum(reasoning_tokens), 0)::BIGINT", "output tokens spent reasoning"),
    Figure(
        "unpriced_calls",
        "coalesce(sum(unpriced_calls), 0)::BIGINT",
        "calls with usage but neither a token price nor GPU time: cost unknown, never zero",
    ),
    Figure(
        "calls_without_usage",
        "coalesce(sum(calls_without_usage), 0)::BIGINT",
        "calls that reported no usage: tokens and cost unknown, never zero",
    ),
    Figure("token_cost_usd", "sum(token_cost_usd)", "cost of the calls with a token price; null: none has one"),
    Figure(
        "gpu_busy_cost_usd",
        "coalesce(sum(gpu_busy_cost_usd), 0)",
        "GPU busy time of the calls without a token price x the slice's price",
    ),
    Figure("total_cost_usd", "sum(total_cost_usd)", "token_cost_usd + gpu_busy_cost_usd; null: neither"),
    Figure("reported_cost_usd", "sum(reported_cost_usd)", "provider-reported cost; null: no span reported one"),
)
FIGURE_NAMES: tuple[str, ...] = tuple(f.name for f in FIGURES)
BY_NAME: dict[str, Figure] = {f.name: f for f in FIGURES}
COUNT_FIGURES = tuple(f.name for f in FIGURES if not f.money)
MONEY_FIGURES = tuple(f.name for f in FIGURES if f.money)


def figure_select(names: tuple[str, ...] = FIGURE_NAMES) -> str:
    """The SELECT list of the named figures, each under its name."""
    return ",\n       ".join(f"{BY_NAME[name].aggregate} AS {name}" for name in names)


FIGURE_SELECT = figure_select()
