"""Tokens per modality end to end: spans with `gen_ai.usage.{text,audio,image}.input_tokens` and
`gen_ai.usage.{text,audio}.output_tokens` (the current GenAI semantic conventions), and OpenInference's
`llm.token_count.*_details.audio`, made by the real OTel SDK, exported over real gRPC to a real receiver,
written as Parquet and priced by the analyzer: equal to genai-prices' `calc_price` with the audio / image
tokens priced at the model's own prices (not as text)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from genai_prices import Usage, calc_price
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from receiver_process import ReceiverProcess

from analyzer.analysis import Analysis
from analyzer.cost import CostQuery, cost_rows

pytestmark = pytest.mark.slow

SEMCONV_CALL = {  # gemini-2.5-flash has its own input audio price (and its cache-read audio price)
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "gcp.gemini",
    "gen_ai.request.model": "gemini-2.5-flash",
    "gen_ai.usage.input_tokens": 12_000,
    "gen_ai.usage.output_tokens": 800,
    "gen_ai.usage.text.input_tokens": 4_000,
    "gen_ai.usage.audio.input_tokens": 7_000,
    "gen_ai.usage.image.input_tokens": 1_000,
    "gen_ai.usage.text.output_tokens": 800,
}
OPENINFERENCE_CALL = {  # gpt-audio: its own input and output audio prices
    "openinference.span.kind": "LLM",
    "llm.provider": "openai",
    "llm.model_name": "gpt-audio",
    "llm.token_count.prompt": 3_000,
    "llm.token_count.completion": 1_200,
    "llm.token_count.prompt_details.audio": 2_500,
    "llm.token_count.completion_details.audio": 1_000,
}


def test_audio_and_image_tokens_priced_at_their_own_prices(data_dir: Path) -> None:
    with ReceiverProcess(data_dir) as receiver:
        provider = TracerProvider(resource=Resource.create({"service.name": "voice-agent"}))
        provider.add_span_processor(
            SimpleSpanProcessor(OTLPSpanExporter(endpoint=receiver.grpc_endpoint, insecure=True))
        )
        tracer = provider.get_tracer("agentmeter.test")
        with tracer.start_as_current_span("invoke_agent voice", attributes={"gen_ai.operation.name": "invoke_agent"}):
            for name, attributes in (("chat gemini-2.5-flash", SEMCONV_CALL), ("ChatOpenAI", OPENINFERENCE_CALL)):
                with tracer.start_as_current_span(name, kind=trace.SpanKind.CLIENT, attributes=attributes):
                    pass
        provider.shutdown()
    analysis = Analysis.open(data_dir)
    got = {r["model"]: r["token_cost_usd"] for r in cost_rows(analysis, CostQuery(by=["model"])).rows}
    at = None  # both models have one price today: no time dependence
    gemini = calc_price(
        Usage(input_tokens=12_000, output_tokens=800, input_audio_tokens=7_000, input_image_tokens=1_000),
        "gemini-2.5-flash", provider_id="google", genai_request_timestamp=at,
    ).total_price  # fmt: skip
    audio_preview = calc_price(
        Usage(input_tokens=3_000, output_tokens=1_200, input_audio_tokens=2_500, output_audio_tokens=1_000),
        "gpt-audio", provider_id="openai", genai_request_timestamp=at,
    ).total_price  # fmt: skip
    assert got == {"gemini-2.5-flash": gemini, "gpt-audio": audio_preview}
    as_text = calc_price(Usage(input_tokens=3_000, output_tokens=1_200), "gpt-audio", provider_id="openai")
    assert audio_preview > as_text.total_price > Decimal(0)  # the audio prices matter here
