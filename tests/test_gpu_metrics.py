"""DCGM metrics sent by the real OTel SDK exporter over gRPC to the GPU metrics receiver; WAL durability."""

from __future__ import annotations

import shutil
import tempfile
import time
from concurrent import futures
from pathlib import Path

import duckdb
import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import DataPointFlags
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from receiver_process import ReceiverProcess

from analyzer.dataset import open_dataset
from analyzer.gpu import gpu_report
from collector_ext.config import ReceiverConfig
from collector_ext.demo.dcgm_exporter import ExporterConfig, Gpu, Holder, MigInstance, scrape
from collector_ext.demo.fake_kubelet import Claim, Container, FakeKubelet, Pod
from collector_ext.gpu.metrics import GpuMetricsReceiver
from collector_ext.storage.dataset_files import DatasetFiles

# One scrape of node-1 by dcgm-exporter --kubernetes --kubernetes-enable-dra, as it labels it
# (collector_ext/demo/dcgm_exporter.py, each rule naming its upstream file). The node is the one of
# dcgm-exporter's own MIG fixture (NVIDIA/dcgm-exporter internal/pkg/transformation/kubernetes_mig_test.go,
# sampleDeviceInfoJSON): GPU 0 an H100 80GB HBM3 in MIG mode with a 1g.10gb GPU instance (GI 11, MIG profile
# id 19) and whole GPU 1 beside it, with their NVML UUIDs. A MIG device's UUID is NVML's `MIG-<uuid>` form
# (R470 and later drivers), which NVIDIA's DRA driver publishes as the device's `uuid` attribute and
# dcgm-exporter as `dra_mig_device_uuid` (transformation/dra.go `GetDeviceInfo`); the DRA device is named
# `gpu-<minor>-mig-<profile without dots>-<profile id>-<placement start>` (NVIDIA/k8s-dra-driver-gpu
# cmd/gpu-kubelet-plugin/deviceinfo.go `migppCanonicalName`). The MIG instance is claimed through DRA by
# agents/vllm-a. The MIG row carries no pod and no dra_* labels (dcgm-exporter looks MIG rows up by
# `<gpu>-<GPU_I_ID>`, which never matches the parent UUID its DRA entries are keyed by); the parent GPU's row
# is emitted once per claim on it, with the claim's pod and dra_* labels and the claimed MIG device's profile
# and UUID.
GPU_0_UUID, GPU_1_UUID = "GPU-be839661-c0f5-7452-284b-b875666df60c", "GPU-21c6d9d7-46cd-7e91-99c3-7b6a06a3faea"
MIG_UUID = "MIG-4f6f9a5e-1c2d-5b8e-9a47-0d3c6b2e8f11"
GPU_0 = Gpu(0, GPU_0_UUID, model="NVIDIA H100 80GB HBM3", mig=(MigInstance(11, "1g.10gb", 19, 0, MIG_UUID),))
MIG_DEVICE = GPU_0.mig_dra_device(GPU_0.mig[0])
assert MIG_DEVICE == "gpu-0-mig-1g10gb-19-0"  # as NVIDIA's DRA driver names it
VLLM_A = Holder("agents", "vllm-a", "server", "a-gpu", "agents", "gpu.nvidia.com", "node-1", MIG_DEVICE)
PARENT_ROW, MIG_ROW = scrape("node-1", [GPU_0], [VLLM_A], ExporterConfig())
PARENT_LABELS, MIG_LABELS = PARENT_ROW.labels, MIG_ROW.labels
# A whole GPU of another pod, its pod label renamed by the Collector's prometheus receiver (honor_labels off).
WHOLE_GPU_LABELS = {"gpu": "1", "UUID": GPU_1_UUID, "hostname": "node-1", "exported_pod": "trainer"}


class Recorder(metrics_service_pb2_grpc.MetricsServiceServicer):
    """The OTLP MetricsService delegating to the receiver, as the receiver's gRPC server does."""

    def __init__(self, receiver: GpuMetricsReceiver) -> None:
        self.receiver = receiver
        self.answers: list[tuple[int, str]] = []

    def Export(self, request, context):  # noqa: N802
        rejected, message = self.receiver.export(request)
        self.answers.append((rejected, message))
        response = metrics_service_pb2.ExportMetricsServiceResponse()
        if rejected:
            response.partial_success.rejected_data_points = rejected
            response.partial_success.error_message = message
        return response


def make_config(data_dir: Path, **overrides) -> ReceiverConfig:
    return ReceiverConfig(data_dir=data_dir, writer_id="w1", fsync="never", **overrides)


@pytest.fixture
def served(data_dir: Path):
    receiver = GpuMetricsReceiver(make_config(data_dir), DatasetFiles(data_dir, "w1"))
    recorder = Recorder(receiver)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(recorder, server)
    port = server.add_insecure_port("127.0.0.1:0")  # the kernel picks a free port as it binds
    server.start()
    yield receiver, recorder, port
    server.stop(grace=None).wait(5)
    receiver.close()


def rows(data_dir: Path, columns: str = "metric, value, gpu, uuid, gpu_i_id, pod", where: str = "true") -> list[tuple]:
    glob = str(data_dir / "gpu_metrics" / "*" / "*.parquet")
    sql = f"SELECT {columns} FROM read_parquet($glob) WHERE {where} ORDER BY ALL"
    return duckdb.connect().execute(sql, {"glob": glob}).fetchall()


def test_sdk_exporter_dcgm_gauges_and_sums_become_rows(served, data_dir: Path) -> None:
    receiver, recorder, port = served
    exporter = OTLPMetricExporter(endpoint=f"127.0.0.1:{port}", insecure=True)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(
        metric_readers=[reader], resource=Resource.create({"service.name": "dcgm-exporter", "k8s.node.name": "n9"})
    )
    meter = provider.get_meter("prometheus-receiver")

    def engine_active(options: CallbackOptions):
        yield Observation(0.25, MIG_LABELS)
        yield Observation(0.4, PARENT_LABELS)
        yield Observation(0.0, WHOLE_GPU_LABELS)

    def gpu_util(options: CallbackOptions):
        yield Observation(87, WHOLE_GPU_LABELS)  # an int gauge

    meter.create_observable_gauge("DCGM_FI_PROF_GR_ENGINE_ACTIVE", [engine_active])
    meter.create_observable_gauge("DCGM_FI_DEV_GPU_UTIL", [gpu_util])
    meter.create_observable_counter("DCGM_FI_DEV_FB_USED", [lambda _: [Observation(4096, MIG_LABELS)]])
    meter.create_observable_gauge("DCGM_FI_DEV_SM_CLOCK", [lambda _: [Observation(1980, MIG_LABELS)]])  # dropped
    provider.shutdown()  # collects once and exports through the real exporter
    assert recorder.answers == [(0, "")]
    assert receiver.dropped_points == 1
    assert receiver.flush() == 5
    assert rows(data_dir) == [
        ("DCGM_FI_DEV_FB_USED", 4096.0, "0", GPU_0_UUID, "11", None),
        ("DCGM_FI_DEV_GPU_UTIL", 87.0, "1", GPU_1_UUID, None, "trainer"),
        ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", 0.0, "1", GPU_1_UUID, None, "trainer"),
        ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", 0.25, "0", GPU_0_UUID, "11", None),
        ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", 0.4, "0", GPU_0_UUID, None, "vllm-a"),
    ]
    columns = (
        "gpu_i_id, gpu_i_profile, hostname, namespace, container, dra_claim_name, dra_claim_namespace, "
        "dra_driver_name, dra_pool_name, dra_device_name, dra_mig_profile, labels, time > TIMESTAMPTZ '2020-01-01'"
    )
    mig_row, parent_row = rows(data_dir, columns, f"uuid = '{GPU_0_UUID}' AND metric = 'DCGM_FI_PROF_GR_ENGINE_ACTIVE'")
    # the MIG instance's own row: its GPU instance, no pod, no claim
    assert mig_row == (
        "11",
        "1g.10gb",
        "node-1",
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        {"device": "nvidia0", "modelName": "NVIDIA H100 80GB HBM3"},
        True,
    )
    # the parent GPU's copy for the claim: the claim's labels, the MIG device's UUID kept in `labels`
    assert parent_row == (
        None,
        None,
        "node-1",
        "agents",
        "server",
        "a-gpu",
        "agents",
        "gpu.nvidia.com",
        "node-1",
        MIG_DEVICE,
        "1g.10gb",
        {"device": "nvidia0", "modelName": "NVIDIA H100 80GB HBM3", "dra_mig_device_uuid": MIG_UUID},
        True,
    )
    # the whole GPU's hostname comes from its own `hostname` label, not the resource's k8s.node.name
    assert rows(data_dir, "DISTINCT hostname", f"uuid = '{GPU_1_UUID}'") == [("node-1",)]


def test_sdk_histogram_of_a_kept_metric_is_rejected_by_name(served, data_dir: Path) -> None:
    receiver, recorder, port = served
    exporter = OTLPMetricExporter(endpoint=f"127.0.0.1:{port}", insecure=True)
    provider = MeterProvider(metric_readers=[PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)])
    histogram = provider.get_meter("m").create_histogram("DCGM_FI_DEV_FB_USED")
    histogram.record(10, {"gpu": "0"})
    histogram.record(20, {"gpu": "1"})
    provider.get_meter("m").create_observable_gauge(
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE", [lambda _: [Observation(0.5, {"gpu": "0"})]]
    )
    provider.shutdown()  # collects once and exports through the real exporter
    assert recorder.answers == [(2, "DCGM_FI_DEV_FB_USED is a histogram (only gauge and sum are read) (2)")]
    receiver.flush()
    assert rows(data_dir, "metric, value, gpu") == [("DCGM_FI_PROF_GR_ENGINE_ACTIVE", 0.5, "0")]


def gauge_request(points: list[tuple[int, float, dict]], name: str = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"):
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add(name=name)
    for time_ns, value, labels in points:
        point = metric.gauge.data_points.add(time_unix_nano=time_ns, as_double=value)
        point.attributes.extend(KeyValue(key=k, value={"string_value": v}) for k, v in labels.items())
    return request


def test_bad_points_rejected_one_by_one_and_staleness_markers_skipped(data_dir: Path) -> None:
    receiver = GpuMetricsReceiver(make_config(data_dir), DatasetFiles(data_dir, "w1"))
    request = gauge_request([(10**18, 0.5, {"gpu": "0"}), (0, 0.5, {"gpu": "0"}), (10**18, float("nan"), {})])
    stale = request.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points.add(time_unix_nano=10**18 + 1)
    stale.flags = DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
    assert receiver.export(request) == (
        2,
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE: data point value is not finite (1); "
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE: data point without a timestamp (1)",
    )
    receiver.close()
    assert rows(data_dir, "epoch_ns(time), value, gpu") == [(10**18, 0.5, "0")]


def test_acknowledged_samples_survive_a_crash_and_batches_are_not_per_request(data_dir: Path) -> None:
    config = make_config(data_dir, parquet_max_rows=4, parquet_max_seconds=3600)
    receiver = GpuMetricsReceiver(config, DatasetFiles(data_dir, "w1"))
    receiver.writer.stop_flusher()  # the test runs the flusher's steps itself
    for i in range(4):
        assert receiver.export(gauge_request([(10**18 + i * 10**9, i / 10, {"gpu": "0"})])) == (0, "")
    assert receiver.writer.write_due() == 4  # 4 rows staged: a batch is due
    for i in range(4, 6):
        assert receiver.export(gauge_request([(10**18 + i * 10**9, i / 10, {"gpu": "0"})])) == (0, "")
    assert receiver.writer.write_due() == 0  # 2 rows: not yet a batch
    # one file of 4 rows; 2 rows acknowledged, only in the WAL
    files = list((data_dir / "gpu_metrics").glob("date=*/*.parquet"))
    assert len(files) == 1
    assert duckdb.connect().execute("SELECT count(*) FROM read_parquet($f)", {"f": str(files[0])}).fetchone() == (4,)
    segments_before_crash = receiver.wal.segments()
    assert len(segments_before_crash) == 1  # the written batch's segment was retired
    assert receiver.snapshot().writer.rows_buffered == 2
    # crash: no close(); a new receiver replays the WAL and writes what was acknowledged
    receiver2 = GpuMetricsReceiver(config, DatasetFiles(data_dir, "w1"))
    assert rows(data_dir, "value") == [(0.0,), (0.1,), (0.2,), (0.3,), (0.4,), (0.5,)]
    assert receiver2.wal.segments() == []
    receiver2.close()
    receiver3 = GpuMetricsReceiver(config, DatasetFiles(data_dir, "w1"))  # nothing left to replay
    receiver3.close()
    assert len(rows(data_dir, "value")) == 6


@pytest.mark.slow
def test_real_receiver_process_with_fake_kubelet_and_both_otlp_transports(data_dir: Path) -> None:
    """SDK exporters (gRPC and HTTP) -> `collector-ext serve` <- fake kubelet; then `analyze gpu` reads it."""
    socket_dir = Path(tempfile.mkdtemp(prefix="kl-", dir="/tmp"))
    pod = Pod("agents", "vllm-a", (Container("server", claims=(Claim("a-gpu", MIG_DEVICE),)),))
    try:
        with (
            FakeKubelet(socket_dir / "kubelet.sock", [pod]) as kubelet,
            ReceiverProcess(
                data_dir,
                "--podresources-socket",
                str(socket_dir / "kubelet.sock"),
                "--podresources-interval-seconds",
                "0.1",
                "--node-name",
                "node-1",
            ) as receiver,
        ):
            deadline = time.monotonic() + 20
            while kubelet.calls["List"] < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            for exporter in (
                OTLPMetricExporter(endpoint=receiver.grpc_endpoint, insecure=True),
                HttpMetricExporter(endpoint=f"{receiver.http_url}/v1/metrics"),
            ):
                reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
                provider = MeterProvider(metric_readers=[reader])
                provider.get_meter("dcgm").create_observable_gauge(
                    "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
                    [lambda _: [Observation(0.5, MIG_LABELS), Observation(0.9, PARENT_LABELS)]],
                )
                provider.shutdown()
                time.sleep(1.1)  # a lower bound, not a wait: the SDK stamps the next scrape > 1 s later
            while kubelet.calls["List"] < 6 and time.monotonic() < deadline:
                time.sleep(0.05)
            # SIGTERM: the receiver wrote its buffered samples and the open allocation interval
    finally:
        shutil.rmtree(socket_dir, ignore_errors=True)
    assert rows(data_dir, "metric, value, gpu_i_id, dra_device_name, pod") == [
        ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", 0.5, "11", None, None),
        ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", 0.5, "11", None, None),
        ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", 0.9, None, MIG_DEVICE, "vllm-a"),
        ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", 0.9, None, MIG_DEVICE, "vllm-a"),
    ]
    allocations = (
        duckdb.connect()
        .execute(
            "SELECT node, namespace, pod, source, claim_name, device, count(*) FROM read_parquet($glob) GROUP BY ALL",
            {"glob": str(data_dir / "gpu_allocations" / "*" / "*.parquet")},
        )
        .fetchall()
    )
    # one interval: the poller polled throughout, however late (only polls the kubelet fails end one)
    assert allocations == [("node-1", "agents", "vllm-a", "dra", "a-gpu", MIG_DEVICE, 1)]
    (row,) = gpu_report(open_dataset(data_dir).con, "pod")
    assert (row["pod"], row["profile"], row["activity_source"]) == ("agents/vllm-a", "1g.10gb", "dcgm")
    assert 0 < row["busy_slice_hours"] <= row["allocated_slice_hours"]
    assert row["utilization"] <= 0.5  # the MIG row's 0.5, never the parent GPU's 0.9 copied for the claim
