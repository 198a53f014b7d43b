"""The SQL price table equals genai_prices.calc_price, Decimal-exact, on a broad sample; user price files."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from genai_prices import Usage, calc_price
from genai_prices.data_snapshot import get_snapshot
from genai_prices.types import ModelPrice, StartDateConstraint, TieredPrices, TimeOfDateConstraint

from analyzer.analysis import Analysis
from analyzer.cli import main
from analyzer.cost import CostQuery, cost_rows
from analyzer.dataset import AnalyzerError, Dataset, open_dataset
from analyzer.pricing import install_span_costs, load_price_file, resolved_names
from collector_ext.schema import SPANS
from collector_ext.storage.dataset_files import DatasetFiles

BASE_TIME = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
# (input, output, cache_read, cache_write, reasoning): input includes cache, output includes reasoning
USAGE_CASES = [
    (1_000, 200, 0, 0, 0),
    (50_000, 1_500, 30_000, 0, 0),
    (20_000, 900, 0, 5_000, 0),
    (8_000, 3_000, 2_000, 1_000, 1_200),
    (0, 100, 0, 0, 0),
]


def _span(n: int, provider: str | None, model: str, at: datetime, usage: tuple[int, ...]) -> dict:
    inp, out, cr, cw, rs = usage
    return {
        "trace_id": n.to_bytes(16, "big"),
        "span_id": n.to_bytes(8, "big"),
        "name": f"chat {model}",
        "start_time": at,
        "end_time": at + timedelta(seconds=1),
        "category": "llm",
        "provider": provider,
        "request_model": model,
        "response_model": model,
        "response_id": f"resp-{n}",
        "input_tokens": inp,
        "output_tokens": out,
        "cache_read_tokens": cr,
        "cache_write_tokens": cw,
        "reasoning_tokens": rs,
        "usage_counted": True,
        "agent_name": f"agent-{n % 3}",
    }


def _write(root: Path, rows: list[dict]) -> None:
    DatasetFiles(root, "test").write("spans", pa.Table.from_pylist(rows, schema=SPANS))


def _priced(root: Path, rows: list[dict], expected: dict[int, Decimal]) -> Dataset:
    """The rows written and priced by the analyzer (span_costs): each span's cost exactly `expected[n]` (n the
    span's number); the dataset, for more checks."""
    _write(root, rows)
    dataset = open_dataset(root)
    install_span_costs(dataset.con)
    got = {
        int.from_bytes(span_id, "big"): cost
        for span_id, cost in dataset.con.execute("SELECT span_id, cost_usd FROM span_costs").fetchall()
    }
    mismatches = {n: (got.get(n), price) for n, price in expected.items() if got.get(n) != price}
    assert not mismatches, list(mismatches.items())[:5]
    return dataset


def _expected(provider_id: str | None, model: str, at: datetime, usage: tuple[int, ...]) -> Decimal | None:
    inp, out, cr, cw, rs = usage
    try:
        return calc_price(
            Usage(
                input_tokens=inp,
                output_tokens=out,
                cache_read_tokens=cr,
                cache_write_tokens=cw,
                output_reasoning_tokens=rs,
            ),
            model,
            provider_id=provider_id,
            genai_request_timestamp=at,
        ).total_price
    except (LookupError, ValueError):
        return None  # genai-prices does not cover this case


def _moments(model) -> list[datetime]:
    """Span times around every historic start date and time-of-day boundary of the model's prices."""
    moments = [BASE_TIME]
    if isinstance(model.prices, ModelPrice):
        return moments
    for conditional in model.prices:
        constraint = conditional.constraint
        if isinstance(constraint, StartDateConstraint):
            day = datetime.combine(constraint.start_date, datetime.min.time(), tzinfo=UTC)
            moments += [day, day - timedelta(seconds=1), day + timedelta(hours=13)]
        elif isinstance(constraint, TimeOfDateConstraint):
            for moment in (constraint.start_time, constraint.end_time):
                at = datetime.combine(BASE_TIME.date(), moment).astimezone(UTC)
                moments += [at, at - timedelta(microseconds=1)]
    return moments


def _tier_usages(model) -> list[tuple[int, ...]]:
    prices = [model.prices] if isinstance(model.prices, ModelPrice) else [c.prices for c in model.prices]
    starts = {t.start for p in prices for v in p.__dict__.values() if isinstance(v, TieredPrices) for t in v.tiers}
    cases = []
    for start in sorted(starts):
        cases += [(start, 700, start // 2, 0, 0), (start + 1, 700, start // 2, start // 10, 100)]
    return cases


def _token_priced(model) -> bool:
    prices = [model.prices] if isinstance(model.prices, ModelPrice) else [c.prices for c in model.prices]
    return any(p.input_mtok is not None or p.output_mtok is not None for p in prices)


def _sample():
    """A broad sample: every 4th bundled model, plus every model with tiers, historic or time-of-day prices.

    Models priced by something other than tokens (per image, per audio hour) are out: agentmeter reports them
    unpriced rather than at the zero genai-prices computes from token usage alone.
    """
    picked = []
    for provider in get_snapshot().providers:
        for i, model in enumerate(provider.models):
            special = not isinstance(model.prices, ModelPrice) or _tier_usages(model)
            if (i % 4 == 0 or special) and _token_priced(model) and provider.find_model(model.id) is model:
                picked.append((provider.id, model))
    return picked


def test_sql_cost_equals_calc_price_on_a_broad_sample(data_dir: Path) -> None:
    rows, expected, kinds = [], {}, {"tiered": 0, "historic": 0, "time_of_day": 0, "cache": 0}
    counter = itertools.count(1)
    for provider_id, model in _sample():
        usages = USAGE_CASES + _tier_usages(model)
        for at, usage in itertools.product(_moments(model), usages):
            price = _expected(provider_id, model.id, at, usage)
            if price is None:
                continue
            n = next(counter)
            rows.append(_span(n, provider_id, model.id, at, usage))
            expected[n] = price
            kinds["tiered"] += usage in _tier_usages(model) and usage[0] > min(u[0] for u in _tier_usages(model))
            kinds["historic"] += at != BASE_TIME and not isinstance(model.prices, ModelPrice)
            kinds["time_of_day"] += not isinstance(model.prices, ModelPrice) and any(
                isinstance(c.constraint, TimeOfDateConstraint) for c in model.prices
            )
            kinds["cache"] += usage[2] > 0 or usage[3] > 0
    # dated names and OpenTelemetry provider spellings, priced through genai-prices' own matching
    aliases = [
        ("anthropic", "claude-sonnet-4-5-20250929", "anthropic"),
        ("aws.bedrock", "us.anthropic.claude-sonnet-4-20250514-v1:0", "aws.bedrock"),
        ("gcp.vertex_ai", "gemini-2.5-pro", "gcp.vertex_ai"),
        ("azure.ai.openai", "gpt-4o", "azure.ai.openai"),
        ("x_ai", "grok-3", "x-ai"),
        (None, "gpt-4o-2024-08-06", None),
        ("openai", "gpt-4o-2024-08-06", "openai"),
    ]
    for provider, model_name, provider_id in aliases:
        for usage in [*USAGE_CASES, (250_000, 800, 100_000, 20_000, 0)]:
            price = _expected(provider_id, model_name, BASE_TIME, usage)
            assert price is not None, (provider, model_name)
            n = next(counter)
            rows.append(_span(n, provider, model_name, BASE_TIME, usage))
            expected[n] = price
    assert len(expected) > 2_000 and all(kinds.values()), kinds
    dataset = _priced(data_dir, rows, expected)
    # summed per group, still exact
    total = dataset.con.execute("SELECT sum(cost_usd) FROM span_costs").fetchone()[0]
    assert total == sum(expected.values())


def test_unknown_models_and_providers_are_unpriced_not_zero(data_dir: Path) -> None:
    rows = [
        _span(1, "vllm", "acme-coder-13b", BASE_TIME, (1000, 10, 0, 0, 0)),
        _span(2, "vllm", "gpt-4o", BASE_TIME, (1000, 10, 0, 0, 0)),  # self-hosted, public name: no guess
        _span(3, "openai", "no-such-model-xyz", BASE_TIME, (1000, 10, 0, 0, 0)),
        _span(4, "openai", "gpt-4o", BASE_TIME, (1000, 10, 0, 0, 0)),
    ]
    _write(data_dir, rows)
    dataset = open_dataset(data_dir)
    table = install_span_costs(dataset.con)
    assert table.unpriced == {
        ("vllm", "acme-coder-13b"): "unknown provider",
        ("vllm", "gpt-4o"): "unknown provider",
        ("openai", "no-such-model-xyz"): "unknown model",
    }
    result = dataset.con.execute("SELECT span_id, priced, cost_usd FROM span_costs ORDER BY span_id").fetchall()
    expected_gpt4o = _expected("openai", "gpt-4o", BASE_TIME, (1000, 10, 0, 0, 0))
    assert [(int.from_bytes(s, "big"), p, c) for s, p, c in result] == [
        (1, False, None),
        (2, False, None),
        (3, False, None),
        (4, True, expected_gpt4o),
    ]


def test_user_price_file_overrides_adds_discounts_and_dates(data_dir: Path, tmp_path: Path) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text(
        """
prices:
  - provider: vllm
    model: acme-coder-13b
    input: 0.20
    output: 0.60
    cache_read: 0.05
  - provider: openai
    pattern: "gpt-4o-mini.*"
    discount_percent: 20
  - model: claude-sonnet-4-5-20250929
    input: 2
    output: 10
    valid_from: 2026-11-03
"""
    )
    day1, day2 = BASE_TIME, BASE_TIME + timedelta(days=1)
    rows = [
        _span(1, "vllm", "acme-coder-13b", day1, (1_000_000, 100_000, 400_000, 0, 0)),
        _span(2, "openai", "gpt-4o-mini", day1, (10_000, 1_000, 0, 0, 0)),
        _span(3, "anthropic", "claude-sonnet-4-5-20250929", day1, (10_000, 1_000, 0, 0, 0)),
        _span(4, "anthropic", "claude-sonnet-4-5-20250929", day2, (10_000, 1_000, 0, 0, 0)),
    ]
    _write(data_dir, rows)
    dataset = open_dataset(data_dir)
    table = install_span_costs(dataset.con, prices)
    assert table.unpriced == {}
    costs = dict(dataset.con.execute("SELECT span_id, cost_usd FROM span_costs").fetchall())
    # 600k uncached input at 0.20 + 400k cache read at 0.05 + 100k output at 0.60 (per million)
    assert costs[(1).to_bytes(8, "big")] == Decimal("0.12") + Decimal("0.02") + Decimal("0.06")
    bundled = _expected("openai", "gpt-4o-mini", day1, (10_000, 1_000, 0, 0, 0))
    assert costs[(2).to_bytes(8, "big")] == bundled * Decimal("0.8")
    assert costs[(3).to_bytes(8, "big")] == _expected(
        "anthropic", "claude-sonnet-4-5-20250929", day1, (10_000, 1_000, 0, 0, 0)
    )
    assert costs[(4).to_bytes(8, "big")] == Decimal("0.02") + Decimal("0.01")
    sources = dict(dataset.con.execute("SELECT span_id, price_source FROM span_costs").fetchall())
    assert [sources[(n).to_bytes(8, "big")] for n in (1, 2, 3, 4)] == ["user", "genai-prices", "genai-prices", "user"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prices: 3", "expected a list of entries"),
        ("prices:\n  - model: x\n    input: 1\n", "give both 'input' and 'output'"),
        ("prices:\n  - model: x\n    pattern: y\n    input: 1\n    output: 2\n", "exactly one of 'model' or 'pattern'"),
        ("prices:\n  - model: x\n    input: -1\n    output: 2\n", "input must be a non-negative number"),
        ("prices:\n  - model: x\n    inptu: 1\n", "unknown key 'inptu'"),
        ("prices:\n  - pattern: '('\n    discount_percent: 5\n", "bad pattern"),
        ("prices:\n  - model: x\n    discount_percent: 150\n", "between 0 and 100"),
        ("prices:\n  - model: x\n    input: 1\n    output: 1\n    valid_from: soon\n", "is not an ISO date"),
        ("prices: [\n", "not valid YAML"),
    ],
)
def test_bad_price_files_give_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(AnalyzerError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_price_file(path)


def test_missing_price_file(tmp_path: Path) -> None:
    with pytest.raises(AnalyzerError, match="cannot read price file"):
        load_price_file(tmp_path / "nope.yaml")


# ---------------------------------------------------------------- the provider and model a call is shown as


@pytest.mark.parametrize(
    ("provider", "model", "shown"),
    [
        ("strands-agents", "gpt-4.1", ("openai", "gpt-4.1")),  # a framework's name, not the provider's
        ("", "openai/gpt-4.1", ("openai", "gpt-4.1")),  # LiteLLM's provider/model, no provider attribute
        (
            "litellm",
            "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0",
            ("aws.bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0"),
        ),  # fmt: skip
        ("", "vertex_ai/gemini-2.5-flash", ("gcp.vertex_ai", "gemini-2.5-flash")),  # the prefix says Vertex
        ("langchain", "gemini-2.5-flash", ("gcp.gen_ai", "gemini-2.5-flash")),  # genai-prices' google
        ("", "claude-sonnet-4-5-20250929", ("anthropic", "claude-sonnet-4-5-20250929")),  # the model's own
        ("openai", "openai/gpt-4.1", ("openai", "gpt-4.1")),  # a prefix naming the span's own provider
        ("openrouter", "openai/gpt-4.1", ("openrouter", "openai/gpt-4.1")),  # a gateway bills its own model id
        ("vllm", "acme-coder-13b", ("vllm", "acme-coder-13b")),  # self-hosted: as named
        ("strands-agents", "acme-coder-13b", (None, "acme-coder-13b")),  # nothing names a provider
    ],
)
def test_resolved_names(provider: str, model: str, shown: tuple[str | None, str]) -> None:
    assert resolved_names(provider, model) == shown


def test_cost_groups_by_the_resolved_provider_and_model(data_dir: Path, tmp_path: Path) -> None:
    usage = (10_000, 1_000, 2_000, 0, 100)
    rows = [
        _span(1, "strands-agents", "gpt-4.1", BASE_TIME, usage),
        _span(2, None, "openai/gpt-4.1", BASE_TIME, usage),  # LiteLLM through google-adk
        _span(3, "openai", "gpt-4.1", BASE_TIME, usage),
        _span(4, "vllm", "acme-coder-13b", BASE_TIME, usage),
        # a call that reported no usage: shown under its resolved names too
        {**_span(5, "strands-agents", "gpt-4.1", BASE_TIME, (0, 0, 0, 0, 0)), "usage_counted": False},
    ]
    for row in rows[4:]:
        row.update(input_tokens=None, output_tokens=None, cache_read_tokens=None, reasoning_tokens=None)
    _write(data_dir, rows)
    each = _expected("openai", "gpt-4.1", BASE_TIME, usage)
    analysis = Analysis(open_dataset(data_dir))
    by = {(r["provider"], r["model"]): r for r in cost_rows(analysis, CostQuery(by=["provider", "model"])).rows}
    assert {
        k: (r["llm_calls"], r["calls_without_usage"], r["unpriced_calls"], r["token_cost_usd"]) for k, r in by.items()
    } == {  # fmt: skip
        ("openai", "gpt-4.1"): (4, 1, 0, 3 * each),
        ("vllm", "acme-coder-13b"): (1, 0, 1, None),
    }
    raw = cost_rows(analysis, CostQuery(by=["span_provider", "span_model"])).rows
    assert {(r["span_provider"], r["span_model"]): r["llm_calls"] for r in raw} == {
        (None, "openai/gpt-4.1"): 1,
        ("openai", "gpt-4.1"): 1,
        ("strands-agents", "gpt-4.1"): 2,
        ("vllm", "acme-coder-13b"): 1,
    }
    # a price entry written with the names shown applies to every call shown under them (0 % included)
    prices = tmp_path / "prices.yaml"
    prices.write_text("prices:\n  - provider: openai\n    model: gpt-4.1\n    discount_percent: 10\n"
                      "  - provider: vllm\n    model: acme-coder-13b\n    discount_percent: 0\n")  # fmt: skip
    discounted = Analysis(open_dataset(data_dir), prices)
    by = {(r["provider"], r["model"]): r for r in cost_rows(discounted, CostQuery(by=["provider", "model"])).rows}
    assert by[("openai", "gpt-4.1")]["token_cost_usd"] == 3 * each * Decimal("0.9")
    assert by[("vllm", "acme-coder-13b")]["unpriced_calls"] == 1  # a discount on no price is no price


def test_a_table_of_unpriced_rows_never_totals_zero(data_dir: Path, capsys) -> None:
    rows = [_span(n, "vllm", f"acme-{n}", BASE_TIME, (1000, 10, 0, 0, 0)) for n in (1, 2)]
    rows.append({**_span(3, "openai", "gpt-4.1", BASE_TIME, (0, 0, 0, 0, 0)), "usage_counted": False,
                 "input_tokens": None, "output_tokens": None})  # fmt: skip
    _write(data_dir, rows)
    assert main(["cost", "--data", str(data_dir), "--by", "model"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if line.startswith("┃"))
    total = next(line for line in lines if line.startswith("│") and line.split("│")[1].strip() == "total")
    shown = dict(zip((c.strip() for c in header.split("┃")[1:-1]), (c.strip() for c in total.split("│")[1:-1]),
                     strict=True))  # fmt: skip
    assert (shown["llm_calls"], shown["unpriced_calls"], shown["calls_without_usage"]) == ("3", "2", "1")
    assert (shown["token_cost_usd"], shown["total_cost_usd"]) == ("-", "-")  # unknown, never $0
    assert any(line.startswith("2 unpriced calls") for line in lines)
    assert any(line.startswith("1 calls without usage") for line in lines)


# ---------------------------------------------------------------- tokens per modality

MODALITY_USAGE_KEYS = ("input_audio_tokens", "input_image_tokens", "input_video_tokens", "output_audio_tokens")


def _modality_models() -> list[tuple[str, object]]:
    """Every bundled model with a price of its own for audio, image or video tokens (and token prices)."""
    keys = {"input_audio_mtok", "input_image_mtok", "input_video_mtok", "output_audio_mtok"}
    picked = []
    for provider in get_snapshot().providers:
        for model in provider.models:
            prices = [model.prices] if isinstance(model.prices, ModelPrice) else [c.prices for c in model.prices]
            own = any(getattr(p, key, None) is not None for p in prices for key in keys)
            if own and _token_priced(model) and provider.find_model(model.id) is model:
                picked.append((provider.id, model))
    return picked


def test_modality_tokens_are_priced_as_genai_prices_prices_them(data_dir: Path) -> None:
    # (input, output, cache_read, reasoning, input_audio, input_image, input_video, output_audio): the
    # modality counts are parts of input / output, as the decoder stores them
    cases = [
        (10_000, 2_000, 0, 0, 4_000, 0, 0, 1_500),
        (50_000, 3_000, 10_000, 500, 20_000, 5_000, 1_000, 0),
        (1_200, 900, 0, 0, 0, 600, 0, 800),
    ]
    models = _modality_models()
    assert {"google", "openai", "aws"} <= {provider for provider, _ in models}
    rows, expected, counter = [], {}, itertools.count(1)
    for provider_id, model in models:
        for inp, out, cr, rs, audio, image, video, out_audio in cases:
            usage = Usage(input_tokens=inp, output_tokens=out, cache_read_tokens=cr, output_reasoning_tokens=rs,
                          input_audio_tokens=audio, input_image_tokens=image, input_video_tokens=video,
                          output_audio_tokens=out_audio)  # fmt: skip
            try:
                price = calc_price(usage, model.id, provider_id=provider_id, genai_request_timestamp=BASE_TIME)
            except (LookupError, ValueError):
                continue  # genai-prices does not cover this case
            n = next(counter)
            row = _span(n, provider_id, model.id, BASE_TIME, (inp, out, cr, 0, rs))
            row.update(zip(MODALITY_USAGE_KEYS, (audio, image, video, out_audio), strict=True))
            rows.append(row)
            expected[n] = price.total_price
    # the parts change the price: priced as text, the same calls would cost something else
    as_text = {n for n, r in enumerate(rows, 1) if expected[n] != _expected(
        r["provider"], r["request_model"], BASE_TIME, (r["input_tokens"], r["output_tokens"], r["cache_read_tokens"],
                                                      0, r["reasoning_tokens"]))}  # fmt: skip
    assert len(expected) >= 40 and len(as_text) >= len(expected) // 2, (len(expected), len(as_text))
    _priced(data_dir, rows, expected)
