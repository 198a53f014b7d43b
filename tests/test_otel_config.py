"""The Collector configurations in otel-config/: parsed and checked for internal consistency.

No otelcol binary is installable here (see otel-config/README.md), so these checks hold the files to what
the Collector validates at start-up (every pipeline component defined) and to agentmeter's own facts
(receiver ports, receive limit, RetryInfo delay, stored GPU metrics and labels).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from collector_ext.config import ReceiverConfig, parse_endpoint

CONFIG_DIR = Path(__file__).resolve().parent.parent / "otel-config"
FILES = ["collector.yaml", "collector-simple.yaml"]
SECTIONS = {"receivers": "receivers", "processors": "processors", "exporters": "exporters"}
DEFAULTS = ReceiverConfig(writer_id="test")
GRPC_PORT = parse_endpoint(DEFAULTS.grpc_endpoint)[1]
HTTP_PORT = parse_endpoint(DEFAULTS.http_endpoint)[1]
# the labels DESIGN.md lists on dcgm-exporter rows; the receiver stores each in its own column
DCGM_LABELS = [
    "gpu", "UUID", "GPU_I_ID", "GPU_I_PROFILE", "Hostname", "hostname", "pod", "namespace", "container",
    "dra_claim_name", "dra_claim_namespace", "dra_driver_name", "dra_pool_name", "dra_device_name", "dra_mig_profile",
]  # fmt: skip
BYTES_PER_SPAN_RAW = 600  # DESIGN.md: ~590 B/span uncompressed


def load(name: str) -> dict:
    return yaml.safe_load((CONFIG_DIR / name).read_text())


def _type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def _port(endpoint: str) -> int:
    return int(endpoint.rstrip("/").rsplit(":", 1)[1])


def _exporters_to_agentmeter(config: dict) -> dict[str, dict]:
    """The OTLP client settings of every exporter that talks to agentmeter (loadbalancing: its otlp part)."""
    found = {}
    for name, exporter in config["exporters"].items():
        if _type(name) == "loadbalancing":
            found[name] = exporter["protocol"]["otlp"]
        elif _type(name) in ("otlp", "otlphttp"):
            found[name] = exporter
    return found


@pytest.mark.parametrize("name", FILES)
def test_every_pipeline_component_is_defined_and_used(name):
    config = load(name)
    pipelines = config["service"]["pipelines"]
    assert pipelines, "no pipelines"
    used: dict[str, set[str]] = {section: set() for section in SECTIONS}
    for pipeline_id, pipeline in pipelines.items():
        assert _type(pipeline_id) in ("traces", "metrics", "logs")
        assert pipeline["receivers"] and pipeline["exporters"]
        for section in SECTIONS:
            for component in pipeline.get(section, []):
                assert component in config[section], f"{pipeline_id} uses undefined {section[:-1]} {component}"
                used[section].add(component)
        # memory_limiter must refuse data before anything else holds it; batch comes last
        processors = pipeline["processors"]
        assert processors[0] == "memory_limiter" and processors[-1] == "batch"
    for extension in config["service"].get("extensions", []):
        assert extension in config["extensions"]
    for section in SECTIONS:
        unused = set(config[section]) - used[section]
        # only the documented optional OTLP/HTTP exporter may stand unused
        assert unused <= {"otlphttp/agentmeter"}, f"unused {section}: {unused}"


@pytest.mark.parametrize("name", FILES)
def test_exporters_point_at_the_receiver_ports_and_honour_its_retry(name):
    config = load(name)
    exporters = _exporters_to_agentmeter(config)
    assert exporters
    for exporter_id, otlp in exporters.items():
        if _type(exporter_id) == "loadbalancing":
            assert config["exporters"][exporter_id]["resolver"]["k8s"]["ports"] == [GRPC_PORT]
        elif _type(exporter_id) == "otlp":
            assert _port(otlp["endpoint"]) == GRPC_PORT
        else:
            assert otlp["endpoint"].startswith("http://") and _port(otlp["endpoint"]) == HTTP_PORT
        assert otlp["compression"] == "gzip"
        retry = otlp["retry_on_failure"]
        assert retry["enabled"] is True
        # the first back-off waits at least the RetryInfo delay agentmeter asks for
        assert float(retry["initial_interval"].removesuffix("s")) >= DEFAULTS.retry_after_seconds
        assert float(otlp["timeout"].removesuffix("s")) >= 5
        if "sending_queue" in otlp:
            assert otlp["sending_queue"]["queue_size"] > 0  # bounded


@pytest.mark.parametrize("name", FILES)
def test_receive_limit_and_batches_fit_the_receiver(name):
    config = load(name)
    grpc = config["receivers"]["otlp"]["protocols"]["grpc"]
    assert grpc["max_recv_msg_size_mib"] <= DEFAULTS.max_recv_msg_mib  # what it takes in, agentmeter takes
    assert (
        _port(grpc["endpoint"]) == 4317 and _port(config["receivers"]["otlp"]["protocols"]["http"]["endpoint"]) == 4318
    )
    batch = config["processors"]["batch"]
    assert batch["send_batch_size"] <= batch["send_batch_max_size"]
    assert batch["send_batch_max_size"] * BYTES_PER_SPAN_RAW < DEFAULTS.max_recv_msg_mib * 1024 * 1024


def test_traces_are_routed_by_trace_id_to_the_headless_service():
    config = load("collector.yaml")
    (exporter,) = config["service"]["pipelines"]["traces"]["exporters"]
    assert _type(exporter) == "loadbalancing"
    balancing = config["exporters"][exporter]
    assert balancing["routing_key"] == "traceID"
    assert balancing["resolver"]["k8s"]["service"] == "agentmeter-collector-ext-headless.agentmeter"


def test_k8s_attributes_give_the_resource_columns_agentmeter_reads():
    for name in FILES:
        extract = load(name)["processors"]["k8sattributes"]["extract"]["metadata"]
        assert {"k8s.namespace.name", "k8s.pod.name", "k8s.node.name", "k8s.container.name"} <= set(extract)


def test_dcgm_scrape_keeps_the_stored_metrics_and_every_slice_label():
    config = load("collector.yaml")
    (scrape,) = config["receivers"]["prometheus/dcgm"]["config"]["scrape_configs"]
    assert scrape["honor_labels"] is True
    metric_rules = scrape["metric_relabel_configs"]
    (keep,) = [r for r in metric_rules if r["action"] == "keep" and r["source_labels"] == ["__name__"]]
    kept = [m for m in DEFAULTS.gpu_metric_names + ["DCGM_FI_DEV_SM_CLOCK"] if re.fullmatch(keep["regex"], m)]
    assert kept == DEFAULTS.gpu_metric_names  # exactly what the receiver stores, nothing else
    (labelkeep,) = [r for r in metric_rules if r["action"] == "labelkeep"]
    for label in ["__name__", *DCGM_LABELS]:
        assert re.fullmatch(labelkeep["regex"], label), label
    assert not re.fullmatch(labelkeep["regex"], "exported_pod")
    # the Collector expands ${...} in its config: a relabel `$1` must be written `$$1`
    text = (CONFIG_DIR / "collector.yaml").read_text()
    assert not re.search(r"(?<!\$)\$\d", text)


def test_readme_says_no_otelcol_binary_here():
    readme = (CONFIG_DIR / "README.md").read_text()
    assert "No official `otelcol`" in readme
    for name in FILES:
        assert f"`{name}`" in readme
