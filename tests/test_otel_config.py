"""The Collector configurations in otel-config/, held to what the upstream components accept.

No otelcol binary is installable here (see otel-config/README.md). So: every component is named by its
current type (not a deprecated alias), every component's settings validate against the schema derived from
its upstream `config.schema.yaml` (otel-config/schemas/, tests/otelcol_schemas.py), every pipeline
component is defined, and agentmeter's own facts hold: batches by bytes below the receiver's limit, the
receiver's ports (no port bound twice in the sidecar's pod), its RetryInfo delay, the DCGM metrics and labels
it stores, both ways dcgm-exporter pods are labelled (issue 12, findings 6, 8 and 9).
"""

from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml
from otelcol_schemas import validate_component

from collector_ext.config import MIB, ReceiverConfig, load_config, parse_endpoint

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "otel-config"
FILES = ["collector.yaml", "collector-simple.yaml"]
SECTIONS = ("receivers", "processors", "exporters", "extensions")
DEFAULTS = ReceiverConfig(writer_id="test")
DEPLOYED = load_config(ROOT / "deploy" / "receiver-config" / "receiver.yaml", writer_id="test")
# The receiver's limit the Collector's batches must stay below: the lower of its default and what deploy/ sets.
RECEIVE_LIMIT = min(DEFAULTS.max_recv_msg_mib, DEPLOYED.max_recv_msg_mib) * MIB
# Current component types and the deprecated aliases they replaced, from the upstream sources:
CURRENT_TYPES = {
    # open-telemetry/opentelemetry-collector: each component's metadata.yaml (type, deprecated_type)
    "otlp_grpc": "otlp",  # exporter/otlpexporter, renamed in v0.144.0 (#14403)
    "otlp_http": "otlphttp",  # exporter/otlphttpexporter, v0.144.0 (#14397)
    "memory_limiter": None,  # processor/memorylimiterprocessor
    # open-telemetry/opentelemetry-collector-contrib
    "load_balancing": "loadbalancing",  # exporter/loadbalancingexporter, PR #48533 (2026-05, v0.153.0)
    "k8s_attributes": "k8sattributes",  # processor/k8sattributesprocessor, PR #45901 (2026-02, v0.146.0)
    "resource_detection": "resourcedetection",  # processor/resourcedetectionprocessor, PR #48525 (v0.153.0)
    "health_check": None,  # extension/healthcheckextension
    "prometheus": None,  # receiver/prometheusreceiver
}
RECEIVER_TYPES = {"otlp", "prometheus"}  # the otlp receiver keeps its name (receiver/otlpreceiver metadata.yaml)
# the labels dcgm-exporter puts on rows (DESIGN.md; --use-old-namespace names; dra_mig_device_uuid) that the
# receiver stores or the analyzer's join reads
DCGM_LABELS = [
    "gpu", "UUID", "uuid", "GPU_I_ID", "GPU_I_PROFILE", "Hostname", "hostname", "pod", "namespace", "container",
    "pod_name", "pod_namespace", "container_name", "dra_claim_name", "dra_claim_namespace", "dra_driver_name",
    "dra_pool_name", "dra_device_name", "dra_mig_profile", "dra_mig_device_uuid",
]  # fmt: skip


def load(name: str) -> dict:
    return yaml.safe_load((CONFIG_DIR / name).read_text())


def _type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def _port(endpoint: str) -> int:
    return int(endpoint.rstrip("/").rsplit(":", 1)[1])


def exporters_to_agentmeter(config: dict) -> dict[str, dict]:
    """The OTLP client settings of every exporter that talks to agentmeter (load_balancing: its otlp part)."""
    found = {}
    for name, exporter in config["exporters"].items():
        if _type(name) == "load_balancing":
            found[name] = exporter["protocol"]["otlp"]
        elif _type(name) in ("otlp_grpc", "otlp_http"):
            found[name] = exporter
    return found


@pytest.mark.parametrize("name", FILES)
def test_components_have_their_current_names_and_are_all_used(name: str) -> None:
    config = load(name)
    deprecated = {old for old in CURRENT_TYPES.values() if old}
    used: dict[str, set[str]] = {section: set() for section in SECTIONS}
    for section in SECTIONS:
        for component in config.get(section, {}):
            kind = _type(component)
            assert kind not in deprecated or (section == "receivers" and kind == "otlp"), component
            assert kind in CURRENT_TYPES or (section == "receivers" and kind in RECEIVER_TYPES), component
    pipelines = config["service"]["pipelines"]
    assert pipelines
    for pipeline_id, pipeline in pipelines.items():
        assert _type(pipeline_id) in ("traces", "metrics", "logs")
        assert pipeline["receivers"] and pipeline["exporters"]
        for section in ("receivers", "processors", "exporters"):
            for component in pipeline.get(section, []):
                assert component in config[section], f"{pipeline_id} uses undefined {section[:-1]} {component}"
                used[section].add(component)
        # memory_limiter must refuse data before anything else holds it; batching is the exporters' (by bytes)
        assert pipeline["processors"][0] == "memory_limiter"
        assert not any(_type(p) == "batch" for p in pipeline["processors"])
    used["extensions"] = set(config["service"].get("extensions", []))
    for section in SECTIONS:
        unused = set(config.get(section, {})) - used[section]
        assert unused <= {"otlp_http/agentmeter"}, f"unused {section}: {unused}"  # the documented alternative


@pytest.mark.parametrize("name", FILES)
def test_every_component_is_what_its_upstream_schema_accepts(name: str) -> None:
    config = load(name)
    checked = []
    for section in SECTIONS:
        for component, settings in config.get(section, {}).items():
            if _type(component) == "prometheus":
                continue  # its `config` is Prometheus' own scrape configuration (checked below)
            validate_component(component, settings)
            checked.append(component)
    assert len(checked) >= 6


@pytest.mark.parametrize(
    ("component", "break_it", "message"),
    [
        ("load_balancing", lambda c: c["protocol"]["otlp"].update(endpoint_typo="x"), "Unevaluated properties"),
        # the batch processor's key is not the exporter's
        ("load_balancing", lambda c: c["protocol"]["otlp"]["sending_queue"]["batch"].update(send_batch_size=1),
         "Unevaluated properties"),
        ("otlp_grpc/agentmeter-metrics", lambda c: c["retry_on_failure"].update(enabled="yes"), "is not of type"),
        ("k8s_attributes", lambda c: c["extract"].update(metadata="k8s.pod.name"), "is not of type"),
        ("otlp", lambda c: c["protocols"]["grpc"].update(max_recv_msg_size="64MiB"), "Unevaluated properties"),
    ],
)  # fmt: skip
def test_the_schemas_reject_what_the_components_reject(component: str, break_it, message: str) -> None:
    config = load("collector.yaml")
    section = next(s for s in SECTIONS if component in config.get(s, {}))
    broken = copy.deepcopy(config[section][component])
    break_it(broken)
    with pytest.raises(jsonschema.ValidationError, match=message):
        validate_component(component, broken)


@pytest.mark.parametrize("name", FILES)
def test_batches_are_bytes_below_the_receivers_limit(name: str) -> None:
    """Finding 8: span counts say nothing of bytes; each exporter batches by serialized size (exporterhelper's
    `bytes` sizer, the uncompressed request: what the receiver's limit counts) to at most half the limit."""
    for exporter_id, otlp in exporters_to_agentmeter(load(name)).items():
        queue = otlp["sending_queue"]
        assert queue["enabled"] is True and queue["sizer"] == "bytes", exporter_id
        batch = queue["batch"]
        # exporter/exporterhelper README: batch sizers are items or bytes; set it: before v0.145.0 it did not
        # always follow the queue's (CHANGELOG v1.51.0/v0.145.0)
        assert batch["sizer"] == "bytes"
        assert 0 < batch["min_size"] <= batch["max_size"] <= RECEIVE_LIMIT // 2, exporter_id
        assert batch["max_size"] <= queue["queue_size"]  # bounded, and a batch fits in the queue
        assert re.fullmatch(r"\d+(ms|s)", batch["flush_timeout"])


@pytest.mark.parametrize("name", FILES)
def test_exporters_honour_the_receivers_retry_and_ports(name: str) -> None:
    config = load(name)
    exporters = exporters_to_agentmeter(config)
    assert exporters
    for exporter_id, otlp in exporters.items():
        assert otlp["compression"] == "gzip"
        retry = otlp["retry_on_failure"]
        assert retry["enabled"] is True
        # the first back-off waits at least the RetryInfo delay agentmeter asks for
        assert float(retry["initial_interval"].removesuffix("s")) >= DEFAULTS.retry_after_seconds
        assert float(otlp["timeout"].removesuffix("s")) >= 5
        if _type(exporter_id) == "load_balancing":
            grpc_port = parse_endpoint(DEPLOYED.grpc_endpoint)[1]
            assert config["exporters"][exporter_id]["resolver"]["k8s"]["ports"] == [grpc_port]
        elif _type(exporter_id) == "otlp_grpc" and name == "collector.yaml":
            assert _port(otlp["endpoint"]) == parse_endpoint(DEPLOYED.grpc_endpoint)[1]


def test_traces_are_routed_by_trace_id_to_the_headless_service() -> None:
    config = load("collector.yaml")
    (exporter,) = config["service"]["pipelines"]["traces"]["exporters"]
    assert _type(exporter) == "load_balancing"
    balancing = config["exporters"][exporter]
    assert balancing["routing_key"] == "traceID"
    assert balancing["resolver"]["k8s"]["service"] == "agentmeter-collector-ext-headless.agentmeter"


def test_the_sidecar_binds_no_port_twice_in_its_pod() -> None:
    """Finding 9: the sidecar and the Collector share one network namespace: the sidecar command the file
    documents listens where the Collector does not, and the exporters send exactly there."""
    text = (CONFIG_DIR / "collector-simple.yaml").read_text()
    (command,) = [line[1:].strip() for line in text.splitlines() if "collector-ext serve" in line]
    args = shlex.split(command)[2:]
    flags = dict(zip(args[::2], args[1::2], strict=True))
    sidecar = ReceiverConfig(
        writer_id="sidecar",
        grpc_endpoint=flags["--grpc-endpoint"],
        http_endpoint=flags["--http-endpoint"],
        scaler_endpoint=flags["--scaler-endpoint"],
    )
    config = load("collector-simple.yaml")
    collector_ports = [_port(p["endpoint"]) for p in config["receivers"]["otlp"]["protocols"].values()]
    collector_ports.append(_port(config["extensions"]["health_check"]["endpoint"]))
    collector_ports.append(8888)  # the Collector's own metrics, by default
    sidecar_ports = [parse_endpoint(e)[1] for e in (sidecar.grpc_endpoint, sidecar.http_endpoint)]
    assert sidecar.scaler_endpoint is None
    assert len(set(collector_ports + sidecar_ports)) == len(collector_ports) + len(sidecar_ports)
    assert parse_endpoint(sidecar.grpc_endpoint)[0] == "127.0.0.1"  # nothing outside the pod reaches it
    exporters = config["exporters"]
    assert exporters["otlp_grpc/agentmeter"]["endpoint"] == sidecar.grpc_endpoint
    assert _port(exporters["otlp_http/agentmeter"]["endpoint"]) == parse_endpoint(sidecar.http_endpoint)[1]


def test_k8s_attributes_give_the_resource_columns_agentmeter_reads() -> None:
    for name in FILES:
        extract = load(name)["processors"]["k8s_attributes"]["extract"]["metadata"]
        assert {"k8s.namespace.name", "k8s.pod.name", "k8s.node.name", "k8s.container.name"} <= set(extract)


def relabel_keeps(rule: dict, labels: dict[str, str]) -> bool:
    """Prometheus `keep`: the source labels' values joined by the separator fully match the regex."""
    value = rule.get("separator", ";").join(labels.get(name, "") for name in rule["source_labels"])
    return re.fullmatch(rule["regex"], value) is not None


def test_dcgm_exporter_pods_of_both_installs_are_scraped() -> None:
    """Finding 6: the Helm chart labels the pods app.kubernetes.io/name=dcgm-exporter, the GPU Operator
    app=nvidia-dcgm-exporter; both name the port `metrics`."""
    (scrape,) = load("collector.yaml")["receivers"]["prometheus/dcgm"]["config"]["scrape_configs"]
    rules = scrape["relabel_configs"]
    assert all(r["action"] == "keep" for r in rules)

    def kept(pod_labels: dict[str, str], port: str = "metrics") -> bool:
        labels = {f"__meta_kubernetes_pod_label_{k}": v for k, v in pod_labels.items()}
        labels["__meta_kubernetes_pod_container_port_name"] = port
        return all(relabel_keeps(rule, labels) for rule in rules)

    assert kept({"app_kubernetes_io_name": "dcgm-exporter", "app_kubernetes_io_instance": "dcgm"})  # Helm chart
    assert kept({"app": "nvidia-dcgm-exporter"})  # GPU Operator
    assert not kept({"app": "nvidia-device-plugin-daemonset"})
    assert not kept({"app_kubernetes_io_name": "dcgm-exporter-proxy"})
    assert not kept({"app": "nvidia-dcgm-exporter"}, port="health")


def test_dcgm_scrape_keeps_the_stored_metrics_and_every_slice_label() -> None:
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


def test_readme_says_no_otelcol_binary_here_and_notes_older_collectors() -> None:
    readme = (CONFIG_DIR / "README.md").read_text()
    assert "No official `otelcol`" in readme
    for name in FILES:
        assert f"`{name}`" in readme
    for current, old in CURRENT_TYPES.items():
        if old:
            assert f"`{old}`" in readme and f"`{current}`" in readme, current
