"""Two instrumentations of one run are one task (issue 11): traces that hold copies of the same inference calls
(the same gen_ai.response.id, at the same moment) are merged into one task, stitch_state `shared_calls`;
every call still counts once.

Real spans: the corpus capture of openai-agents with OpenInference's openai-agents and openai instrumentations
in one process, decoded by the receiver's decoder, stitched by its Stitcher, written as Parquet.
"""

from __future__ import annotations

import json
from pathlib import Path

from conftest import CORPUS
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from stitch_scenarios import agent, llm, span, stitch, tid, write_rows

from analyzer.cli import main
from collector_ext.decode.spans import decode_traces

STEM = "openai-agents__openinference-openai-agents__2.6.0__plus-openinference-openai"
OPENAI_SCOPE = "openinference.instrumentation.openai"
RECEIVED_NS = 1_795_968_300_000_000_000


def _truth() -> tuple[int, int, int]:
    """(calls, input tokens, output tokens) the fake server answered for the file's agent runs."""
    truth = json.loads((CORPUS / "truth.json").read_text())["files"][f"{STEM}.json"]
    calls = {span["call_id"]: span["usage"] for span in truth["llm_spans"]}
    return (
        len(calls),
        sum(u["input_tokens_total_incl_cache"] for u in calls.values()),
        sum(u["output_tokens"] for u in calls.values()),
    )


def _write(request: ExportTraceServiceRequest, root: Path) -> None:
    rows = decode_traces(request, RECEIVED_NS).spans
    traces: dict[bytes, list[dict]] = {}
    for row in rows:
        traces.setdefault(row["trace_id"], []).append(row)
    write_rows(stitch(traces.values()), root)


def _tasks(capsys, root: Path) -> list[dict]:
    assert main(["tasks", "--data", str(root), "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def _totals(tasks: list[dict]) -> tuple[int, int, int]:
    return (
        sum(t["llm_calls"] for t in tasks),
        sum(t["input_tokens"] for t in tasks),
        sum(t["output_tokens"] for t in tasks),
    )


def test_corpus_two_instrumentations_in_one_trace(data_dir: Path, capsys) -> None:
    """As captured: each Runner.run is one trace holding both instrumentations' spans: one task per run."""
    _write(ExportTraceServiceRequest.FromString((CORPUS / f"{STEM}.pb").read_bytes()), data_dir)
    tasks = _tasks(capsys, data_dir)
    assert [(t["traces"], t["llm_calls"], t["stitch_state"]) for t in tasks] == [(1, 1, "ok"), (1, 1, "ok")]
    assert _totals(tasks) == _truth()


def test_corpus_calls_reported_again_in_traces_of_their_own(data_dir: Path, capsys) -> None:
    """A third instrumentation of the same client (one that exports in traces of its own, as the provider
    SDKs' native tracing does) reports each call again: each run makes two unlinked traces sharing its
    call. Still one task per run, named by the smaller trace id; totals unchanged.

    The copies are the captured openai instrumentation's spans (they carry the response id), each moved to a
    trace of its own. (OpenInference's openai-agents `generation` spans carry no response id: a copy of one of
    those in another trace could not be recognised.)
    """
    request = ExportTraceServiceRequest.FromString((CORPUS / f"{STEM}.pb").read_bytes())
    runs = []
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            if scope_spans.scope.name != OPENAI_SCOPE:
                continue
            for original in list(scope_spans.spans):
                copy = scope_spans.spans.add()
                copy.CopyFrom(original)
                copy.trace_id, copy.span_id, copy.parent_span_id = original.trace_id[::-1], original.span_id[::-1], b""
                runs.append(original.trace_id)
    assert len(runs) == 2
    _write(request, data_dir)
    tasks = _tasks(capsys, data_dir)
    assert sorted(t["task_id"] for t in tasks) == sorted(min(run, run[::-1]).hex() for run in runs)
    assert [(t["traces"], t["llm_calls"], t["stitch_state"]) for t in tasks] == [
        (2, 1, "shared_calls"),
        (2, 1, "shared_calls"),
    ]
    assert _totals(tasks) == _truth()


def _orchestrator_and_sdk_copy(copy_offset_ms: int) -> list[list[dict]]:
    """An orchestrator run (trace 1, three calls) and the provider SDK's own tracing of the same three calls in
    trace 2 (same response ids), `copy_offset_ms` after the calls (0: the same moment)."""
    calls = [(100, 10), (200, 20), (300, 30)]
    run = [agent(1, 1, name="orchestrator"), span(1, 2, 1, name="delegate")]
    run += [llm(1, 3 + i, 1, usage, response_id=f"chatcmpl-{i}", start=i * 100) for i, usage in enumerate(calls)]
    sdk = [span(2, 1, name="sdk.session", start=-10_000 + copy_offset_ms)]
    sdk += [
        llm(2, 2 + i, 1, usage, response_id=f"chatcmpl-{i}", start=-10_000 + i * 100 + copy_offset_ms)
        for i, usage in enumerate(calls)
    ]
    return [run, sdk]


def test_constructed_traces_sharing_every_call_are_one_task(data_dir: Path, capsys) -> None:
    write_rows(stitch(_orchestrator_and_sdk_copy(0)), data_dir)
    tasks = _tasks(capsys, data_dir)
    assert [
        (t["task_id"], t["root_agent"], t["traces"], t["llm_calls"], t["input_tokens"], t["output_tokens"])
        for t in tasks
    ] == [(tid(1).hex(), "orchestrator", 2, 3, 600, 60)]
    assert tasks[0]["stitch_state"] == "shared_calls"
    assert main(["task", tid(1).hex(), "--data", str(data_dir), "--format", "json"]) == 0
    tree = json.loads(capsys.readouterr().out)
    assert tree["stitch_state"] == "shared_calls"
    assert (tree["root"]["agent"], tree["root"]["inclusive"]["input_tokens"]) == ("orchestrator", 600)
    assert main(["task", tid(2).hex(), "--data", str(data_dir), "--format", "json"]) == 2  # not a task any more


def test_a_response_id_seen_again_later_is_another_call(data_dir: Path, capsys) -> None:
    """A cache answering with a stored response repeats its id an hour later: no shared moment, two tasks."""
    write_rows(stitch(_orchestrator_and_sdk_copy(3_600_000)), data_dir)
    tasks = _tasks(capsys, data_dir)
    assert [(t["task_id"], t["traces"], t["stitch_state"]) for t in tasks] == [
        (tid(1).hex(), 1, "ok"),
        (tid(2).hex(), 1, "ok"),
    ]
