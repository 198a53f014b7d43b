"""Per-span cost of the ingest hot path's attribute handling: attributes_to_dict, normalize, attribute_map,
and decode_traces as a whole (its own fast paths: normalize_into, interned keys, inline ints).

Input: every span of the real-instrumentation corpus (tests/corpus/*.pb), repeated.
    .venv/bin/python bench/bench_dialects.py            # AGENTMETER_BENCH_ROUNDS=200 by default
    AGENTMETER_BENCH_ROUNDS=20 .venv/bin/python bench/bench_dialects.py   # quick run
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collector_ext.decode.dialects import normalize
from collector_ext.decode.otlp_values import attribute_map, attributes_to_dict
from collector_ext.decode.spans import decode_traces

CORPUS = Path(os.environ.get("AGENTMETER_CORPUS", Path(__file__).resolve().parents[1] / "tests" / "corpus"))
ROUNDS = int(os.environ.get("AGENTMETER_BENCH_ROUNDS", "200"))


def corpus_requests() -> list[ExportTraceServiceRequest]:
    return [ExportTraceServiceRequest.FromString(pb_file.read_bytes()) for pb_file in sorted(CORPUS.glob("*.pb"))]


def corpus_spans() -> list:
    spans = []
    for request in corpus_requests():
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                spans.extend(scope_spans.spans)
    return spans


def per_span_us(label: str, work, items: list, rounds: int, spans_per_item: float = 1.0) -> float:
    start = time.perf_counter()
    for _ in range(rounds):
        for item in items:
            work(item)
    elapsed = time.perf_counter() - start
    count = rounds * len(items) * spans_per_item
    print(f"{label:<36} {elapsed / count * 1e6:8.2f} us/span   {count / elapsed:>10,.0f} spans/s")
    return round(elapsed / count * 1e6, 3)


def main(quick: bool = False) -> dict:
    rounds = max(1, ROUNDS // 10) if quick else ROUNDS
    spans = corpus_spans()
    attribute_count = sum(len(span.attributes) for span in spans)
    print(f"{len(spans)} corpus spans, {attribute_count / len(spans):.1f} attributes/span, {rounds} rounds")
    dicts = [(span.name, span.kind, attributes_to_dict(span.attributes)) for span in spans]

    def full(span) -> None:
        attributes = attributes_to_dict(span.attributes)
        normalized = normalize(span.name, span.kind, attributes)
        attribute_map({k: v for k, v in attributes.items() if k not in normalized.consumed})

    requests = corpus_requests()
    return {
        "decode_traces_us_per_span": per_span_us(
            "decode_traces (the receiver's path)",
            lambda request: decode_traces(request, 1),
            requests,
            rounds,
            spans_per_item=len(spans) / len(requests),
        ),
        "attributes_to_dict_us_per_span": per_span_us(
            "attributes_to_dict", lambda span: attributes_to_dict(span.attributes), spans, rounds
        ),
        "normalize_us_per_span": per_span_us("normalize", lambda item: normalize(*item), dicts, rounds),
        "attribute_map_us_per_span": per_span_us("attribute_map", lambda item: attribute_map(item[2]), dicts, rounds),
        "all_three_us_per_span": per_span_us("all three (as decode uses them)", full, spans, rounds),
    }


if __name__ == "__main__":
    main()
