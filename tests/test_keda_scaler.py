"""The KEDA external scaler (collector_ext/keda_scaler.py) driven by a real gRPC client (our generated stub)
over loopback: against a real LiveState fed directly, and end to end while the real OTel SDK streams agent
runs into a real receiver process."""

from __future__ import annotations

import contextlib
import io
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
import yaml
from idle_datasets import periodic, write_runs
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from receiver_process import ReceiverProcess

from analyzer.cli import main
from collector_ext.keda import externalscaler_pb2 as pb
from collector_ext.keda import externalscaler_pb2_grpc as pb_grpc
from collector_ext.keda.scaler import BadScalerMetadata, add_scaler_servicer, demand_json
from collector_ext.traces.live_state import LiveState
from collector_ext.traces.span_refs import SpanRef

RPC_TIMEOUT_S = 10


def ref(**metadata: str) -> pb.ScaledObjectRef:
    return pb.ScaledObjectRef(name="planner-scaler", namespace="team-a", scalerMetadata=metadata)


def metrics(stub: pb_grpc.ExternalScalerStub, scaled: pb.ScaledObjectRef, name: str = "") -> pb.MetricValue:
    response = stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=scaled, metricName=name), timeout=RPC_TIMEOUT_S)
    (value,) = response.metricValues
    return value


def span(
    trace: int, *, root: bool, agent: str = "planner", namespace: str = "team-a", service: str = "agents"
) -> SpanRef:
    return SpanRef(
        trace_id=trace.to_bytes(16, "big"),
        span_id=(trace * 2 + root).to_bytes(8, "big"),
        parent_span_id=None if root else (trace * 2 + 1).to_bytes(8, "big"),
        agent_name=agent,
        category="agent" if root else "llm",
        service_name=service,
        k8s_namespace=namespace,
    )


@pytest.fixture
def scaler() -> Iterator[tuple[LiveState, pb_grpc.ExternalScalerStub, object]]:
    live = LiveState()
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    servicer = add_scaler_servicer(server, live)
    port = server.add_insecure_port("127.0.0.1:0")  # the kernel picks a free port as it binds
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield live, pb_grpc.ExternalScalerStub(channel), servicer
    finally:
        channel.close()
        server.stop(0).wait(5)


def test_metric_spec_and_values_follow_the_live_state(scaler) -> None:
    live, stub, _ = scaler
    # KEDA passes the whole trigger metadata: its own keys are ignored
    planner = ref(agent="planner", warmFloor="1.5", targetPerReplica="2", scalerAddress="agentmeter:9090")
    (spec,) = stub.GetMetricSpec(planner, timeout=RPC_TIMEOUT_S).metricSpecs
    assert (spec.metricName, spec.targetSize, spec.targetSizeFloat) == ("agentmeter-in-flight-agent-planner", 2, 2.0)

    assert stub.IsActive(ref(agent="planner"), timeout=RPC_TIMEOUT_S).result is False
    value = metrics(stub, planner)
    assert (value.metricName, value.metricValue, value.metricValueFloat) == (spec.metricName, 2, 1.5)

    live.spans_seen([span(1, root=False), span(2, root=False), span(3, root=False, agent="coder")])
    assert stub.IsActive(ref(agent="planner"), timeout=RPC_TIMEOUT_S).result is True
    value = metrics(stub, planner, name="s0-" + spec.metricName)  # KEDA may hand back its trigger prefix
    assert (value.metricValue, value.metricValueFloat) == (4, 3.5)
    assert metrics(stub, ref(namespace="team-a")).metricValue == 3
    assert metrics(stub, ref(agent="coder", namespace="team-a")).metricValue == 1

    live.spans_seen([span(1, root=True)])  # the root ended: that run is over
    assert metrics(stub, ref(agent="planner")).metricValue == 1
    live.trace_finished((2).to_bytes(16, "big"))
    assert stub.IsActive(ref(agent="planner"), timeout=RPC_TIMEOUT_S).result is False
    # a floor keeps the target active with nothing in flight
    assert stub.IsActive(ref(agent="planner", warmFloor="1"), timeout=RPC_TIMEOUT_S).result is True
    # an agent never seen is idle, not an error: its value is its floor
    value = metrics(stub, ref(agent="never-seen", warmFloor="2"))
    assert (value.metricValue, value.metricValueFloat) == (2, 2.0)


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({}, "must name an agent, namespace or service"),
        ({"agent": "  "}, "must name an agent, namespace or service"),
        ({"agent": "planner", "warmFloor": "two"}, "warmFloor must be a number, got 'two'"),
        ({"agent": "planner", "warmFloor": "-1"}, "warmFloor must be a finite number >= 0"),
        ({"agent": "planner", "warmFloor": "nan"}, "warmFloor must be a finite number >= 0"),
        ({"agent": "planner", "targetPerReplica": "0"}, "targetPerReplica must be a finite number > 0"),
        ({"agnet": "planner"}, "must name an agent, namespace or service"),
        ({"agent": "planner", "warmfloor": "2"}, "unknown scaler metadata 'warmfloor': did you mean 'warmFloor'?"),
        ({"agent": "planner", "target": "replicas"}, "target must be inFlight or unclaimedSandboxes, got 'replicas'"),
        ({"agent": "planner", "target": "unclaimedSandboxes"}, "target unclaimedSandboxes needs startupSeconds"),
        (
            {"agent": "planner", "target": "unclaimedSandboxes", "startupSeconds": "8", "rateWindowSeconds": "7200"},
            "rateWindowSeconds must be a finite number > 0 and <= 3600",
        ),
    ],
)
def test_bad_metadata_is_invalid_argument(scaler, metadata: dict, message: str) -> None:
    _, stub, _ = scaler
    calls = [
        lambda: stub.IsActive(ref(**metadata), timeout=RPC_TIMEOUT_S),
        lambda: stub.GetMetricSpec(ref(**metadata), timeout=RPC_TIMEOUT_S),
        lambda: metrics(stub, ref(**metadata)),
        lambda: next(stub.StreamIsActive(ref(**metadata), timeout=RPC_TIMEOUT_S)),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details().startswith("ScaledObject team-a/planner-scaler: ")
        assert message in caught.value.details()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_warm_pool_target_counts_recent_claims_not_runs_in_flight() -> None:
    """Pool replicas are unclaimed sandboxes: the target is the claims expected within one start-up time plus
    the floor, whatever is still running."""
    clock = Clock()
    live = LiveState(clock=clock)
    pool = {"agent": "planner", "target": "unclaimedSandboxes", "startupSeconds": "20", "warmFloor": "1"}
    assert demand_json(live, pool)["value"] == 1.0  # nothing yet: the floor
    for trace_number, at in ((1, 1000), (2, 1010), (3, 1020)):  # three runs start; only the third still runs
        clock.now = at
        live.spans_seen([span(trace_number, root=False)])
    live.spans_seen([span(1, root=True), span(2, root=True)])
    clock.now = 1030
    answer = demand_json(live, pool)
    assert (answer["claimsInWindow"], answer["inFlight"], answer["value"]) == (3, 1, 1 + 3 / 60 * 20)
    clock.now = 1075  # the claims at 1000 and 1010 are older than the 60 s window
    assert demand_json(live, pool)["claimsInWindow"] == 1
    clock.now = 1500  # the long run is still in flight: one run, but no claim to get ready for
    answer = demand_json(live, pool)
    assert (answer["claimsInWindow"], answer["inFlight"], answer["value"]) == (0, 1, 1.0)
    assert demand_json(live, {**pool, "rateWindowSeconds": "600"})["claimsInWindow"] == 3
    assert demand_json(live, {**pool, "agent": "coder"})["value"] == 1.0


def test_the_warm_pool_metric_is_served_over_grpc(scaler) -> None:
    live, stub, _ = scaler
    pool = ref(agent="planner", target="unclaimedSandboxes", startupSeconds="30", rateWindowSeconds="60")
    (spec,) = stub.GetMetricSpec(pool, timeout=RPC_TIMEOUT_S).metricSpecs
    assert spec.metricName == "agentmeter-unclaimed-agent-planner"
    assert stub.IsActive(pool, timeout=RPC_TIMEOUT_S).result is False
    live.spans_seen([span(1, root=False), span(1, root=True), span(2, root=False)])  # two claims just now
    value = metrics(stub, pool, name=spec.metricName)
    assert (value.metricValue, value.metricValueFloat) == (1, 1.0)  # 2 / 60 s x 30 s
    assert stub.IsActive(pool, timeout=RPC_TIMEOUT_S).result is True


def test_unknown_metric_name_is_not_found(scaler) -> None:
    _, stub, _ = scaler
    with pytest.raises(grpc.RpcError) as caught:
        metrics(stub, ref(agent="planner"), name="agentmeter-in-flight-agent-coder")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "this trigger serves 'agentmeter-in-flight-agent-planner'" in caught.value.details()


def test_stream_pushes_when_the_answer_flips(scaler) -> None:
    live, stub, _ = scaler
    stream = stub.StreamIsActive(ref(agent="planner"), timeout=RPC_TIMEOUT_S)
    assert next(stream).result is False  # the current answer at once
    live.spans_seen([span(1, root=False)])
    assert next(stream).result is True
    live.spans_seen([span(2, root=False)])  # 1 -> 2 in flight: still active, no push
    live.spans_seen([span(1, root=True), span(2, root=True)])
    assert next(stream).result is False  # the next message is the flip back, not a repeat of True
    stream.cancel()
    with pytest.raises(grpc.RpcError) as caught:
        next(stream)
    assert caught.value.code() == grpc.StatusCode.CANCELLED


def test_stream_ends_when_the_scaler_stops(scaler) -> None:
    _, stub, servicer = scaler
    stream = stub.StreamIsActive(ref(agent="planner", warmFloor="1"), timeout=RPC_TIMEOUT_S)
    assert next(stream).result is True
    started = time.monotonic()
    servicer.stop()
    assert list(stream) == []  # the server ends the stream cleanly
    assert time.monotonic() - started < RPC_TIMEOUT_S / 2


def test_demand_json() -> None:
    live = LiveState()
    live.spans_seen([span(1, root=False), span(2, root=False, agent="coder", service="tools")])
    assert demand_json(live, {"agent": "planner", "warmFloor": "2"}) == {
        "agent": "planner",
        "namespace": None,
        "service": None,
        "target": "inFlight",
        "inFlight": 1,
        "claimsInWindow": None,
        "warmFloor": 2.0,
        "value": 3.0,
    }
    assert demand_json(live, {"service": ["tools"]})["value"] == 1.0  # multi-valued query: the last value
    with pytest.raises(BadScalerMetadata, match="must name an agent"):
        demand_json(live, {})
    with pytest.raises(BadScalerMetadata, match="warmFloor must be a number"):
        demand_json(live, {"agent": "planner", "warmFloor": "x"})


# -- end to end: OTel SDK -> real receiver -> scaler ----------------------------------------------------


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def get_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.mark.slow
def test_scaler_follows_agent_runs_streamed_by_the_otel_sdk(data_dir: Path) -> None:
    with ReceiverProcess(data_dir) as receiver:
        provider = TracerProvider(resource=Resource.create({"service.name": "agents", "k8s.namespace.name": "team-a"}))
        provider.add_span_processor(
            SimpleSpanProcessor(OTLPSpanExporter(endpoint=receiver.grpc_endpoint, insecure=True))
        )
        tracer = provider.get_tracer("test_keda_scaler")
        channel = grpc.insecure_channel(receiver.scaler_endpoint)
        stub = pb_grpc.ExternalScalerStub(channel)
        planner = ref(agent="planner", warmFloor="1")
        stream = stub.StreamIsActive(ref(agent="planner"), timeout=60)
        try:
            assert next(stream).result is False
            assert stub.IsActive(ref(agent="planner"), timeout=RPC_TIMEOUT_S).result is False
            assert metrics(stub, planner).metricValue == 1  # nothing in flight: the floor

            def agent_attributes() -> dict:
                return {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner"}

            def chat_attributes() -> dict:
                return {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": "gpt-4o",
                    "gen_ai.agent.name": "planner",
                }

            # two planner runs in flight: each has exported a finished LLM call, neither root has ended
            first = tracer.start_span("invoke_agent planner", attributes=agent_attributes())
            with tracer.start_as_current_span(
                "chat gpt-4o", context=trace.set_span_in_context(first), attributes=chat_attributes()
            ):
                pass
            assert next(stream).result is True  # pushed as the first run's span arrived
            second = tracer.start_span("invoke_agent planner", attributes=agent_attributes())
            with tracer.start_as_current_span(
                "chat gpt-4o", context=trace.set_span_in_context(second), attributes=chat_attributes()
            ):
                pass
            wait_for(lambda: metrics(stub, planner).metricValue == 3)
            assert metrics(stub, planner).metricValueFloat == 3.0
            assert stub.IsActive(ref(agent="planner"), timeout=RPC_TIMEOUT_S).result is True
            status, body = get_json(f"{receiver.http_url}/v1/demand?agent=planner&warmFloor=1")
            assert (status, body) == (
                200,
                {
                    "agent": "planner",
                    "namespace": None,
                    "service": None,
                    "target": "inFlight",
                    "inFlight": 2,
                    "claimsInWindow": None,
                    "warmFloor": 1.0,
                    "value": 3.0,
                },
            )
            # a warm pool's target: the 2 claims of the last minute x 30 s start-up / 60 s + the floor of 1
            status, body = get_json(
                f"{receiver.http_url}/v1/demand?agent=planner&warmFloor=1&target=unclaimedSandboxes&startupSeconds=30"
            )
            assert (status, body["claimsInWindow"], body["value"]) == (200, 2, 2.0)
            status, body = get_json(f"{receiver.http_url}/v1/demand?agent=planner&warmFloor=lots")
            assert status == 400 and "warmFloor must be a number" in body["error"]

            first.end()
            wait_for(lambda: metrics(stub, planner).metricValue == 2)
            second.end()
            assert next(stream).result is False  # pushed as the last run ended
            assert stub.IsActive(ref(agent="planner"), timeout=RPC_TIMEOUT_S).result is False
            assert metrics(stub, planner).metricValue == 1
        finally:
            stream.cancel()
            channel.close()
            provider.shutdown()


def test_the_trigger_metadata_analyze_recommend_emits_is_served(scaler, data_dir: Path) -> None:
    live, stub, _ = scaler
    write_runs(data_dir, periodic("nightly", 5, every_s=172_800, duration_s=60, namespace="team-a"))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["recommend", "--data", str(data_dir), "--agent", "nightly", "--namespace", "team-a"]) == 0
    (scaled_object,) = [d for d in yaml.safe_load_all(out.getvalue()) if d and d["kind"] == "ScaledObject"]
    metadata = scaled_object["spec"]["triggers"][0]["metadata"]
    # a run every 2 days: a warm floor of one sandbox, and the pool's target is the unclaimed sandboxes wanted
    assert (metadata["warmFloor"], metadata["target"], metadata["startupSeconds"]) == ("1", "unclaimedSandboxes", "8")
    emitted = pb.ScaledObjectRef(name="nightly-scaler", namespace="team-a", scalerMetadata=metadata)
    assert metrics(stub, emitted).metricValueFloat == 1.0
    live.spans_seen([span(1, root=False, agent="nightly")])  # a claim: 1 + 1 / 60 s x 8 s
    value = metrics(stub, emitted)
    assert (value.metricValue, value.metricValueFloat) == (2, pytest.approx(1 + 8 / 60))
