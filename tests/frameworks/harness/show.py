"""Print the spans of a capture as trees: `python show.py CAPTURE_DIR [--attrs] [--trace N]`.

GenAI-looking attributes (gen_ai.*, llm.*, openinference.*, traceloop.*, agent/graph names) are shown;
`--attrs` shows every attribute (long values cut).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

INTERESTING = ("gen_ai.", "llm.", "openinference.", "traceloop.", "agent", "graph.", "langgraph", "metadata",
               "session.", "strands", "logfire", "tool.", "model")  # fmt: skip


def value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("capture", type=Path)
    parser.add_argument("--attrs", action="store_true")
    parser.add_argument("--trace", type=int, default=None, help="only the Nth trace (0-based)")
    args = parser.parse_args()
    spans = []
    for pb in sorted((args.capture / "requests").glob("*.pb")):
        request = ExportTraceServiceRequest.FromString(pb.read_bytes())
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    spans.append((ss.scope.name, span))
    traces: dict[bytes, list] = {}
    for scope, span in spans:
        traces.setdefault(span.trace_id, []).append((scope, span))
    ordered = sorted(traces.items(), key=lambda kv: min(s.start_time_unix_nano for _, s in kv[1]))
    for number, (trace_id, members) in enumerate(ordered):
        if args.trace is not None and number != args.trace:
            continue
        print(f"=== trace {number} {trace_id.hex()[:8]} ({len(members)} spans)")
        ids = {s.span_id for _, s in members}
        children: dict[bytes, list] = {}
        for scope, span in members:
            parent = span.parent_span_id if span.parent_span_id in ids else b""
            children.setdefault(parent, []).append((scope, span))

        def walk(parent: bytes, depth: int) -> None:
            for scope, span in sorted(children.get(parent, []), key=lambda x: x[1].start_time_unix_nano):  # noqa: B023 (called within this iteration)
                links = [f"{link.trace_id.hex()[:8]}/{link.span_id.hex()[:8]}" for link in span.links]
                print(
                    f"{'  ' * depth}- {span.name!r} [{scope}] {span.span_id.hex()[:8]}"
                    + (f" links={links}" if links else "")
                )
                for attr in span.attributes:
                    if (
                        args.attrs
                        or attr.key.startswith(INTERESTING)
                        or any(w in attr.key for w in ("token", "usage", "cost"))
                    ):
                        text = repr(value(attr.value))
                        print(f"{'  ' * depth}    {attr.key} = {text[:160]}")
                walk(span.span_id, depth + 1)

        walk(b"", 0)


if __name__ == "__main__":
    main()
