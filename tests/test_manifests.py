"""deploy/: every manifest validated against real Kubernetes JSON schemas, and the pieces agree.

Built-in kinds are checked with the schemas `kubernetes-validate` ships (generated from the Kubernetes
OpenAPI, strict: unknown fields fail), on the oldest and newest versions we support; the KEDA ScaledObject and
Agent Sandbox SandboxWarmPool with the analyzer's CRD schemas (analyzer/schemas/). Then the cross-references:
Services select the pods, ports and probes match the receiver config, the DaemonSet mounts the kubelet
socket read-only with NODE_NAME from the downward API, KEDA points at the scaler port and the warm pool.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from collector_ext.config import load_config, parse_endpoint

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S_VERSIONS = ["1.34", "1.37"]  # DRA resource.k8s.io/v1 is GA from 1.34
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda_scaledobject.json",
    ("extensions.agents.x-k8s.io/v1beta1", "SandboxWarmPool"): "sandboxwarmpool.json",
}


def manifests() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((path.name, doc))
    return docs


def find(kind: str, name: str) -> dict:
    (doc,) = [d for _, d in manifests() if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def validate(doc: dict, version: str) -> None:
    key = (doc["apiVersion"], doc["kind"])
    if key in CRD_SCHEMAS:
        schema = json.loads((ROOT / "analyzer" / "schemas" / CRD_SCHEMAS[key]).read_text())
        jsonschema.Draft202012Validator(schema).validate(doc)
    else:
        kubernetes_validate.validate(doc, version, strict=True)


ALL = manifests()


def test_deploy_holds_every_piece():
    kinds = sorted((doc["kind"], doc["metadata"]["name"]) for _, doc in ALL)
    assert kinds == [
        ("ClusterRole", "agentmeter-otel-collector"),
        ("ClusterRoleBinding", "agentmeter-otel-collector"),
        ("ConfigMap", "agentmeter-collector-ext"),
        ("DaemonSet", "agentmeter-collector-ext-node"),
        ("Namespace", "agentmeter"),
        ("PersistentVolumeClaim", "agentmeter-dataset"),
        ("Role", "agentmeter-otel-collector-endpoints"),
        ("RoleBinding", "agentmeter-otel-collector-endpoints"),
        ("SandboxWarmPool", "research-planner-pool"),
        ("ScaledObject", "research-planner-pool"),
        ("Service", "agentmeter-collector-ext"),
        ("Service", "agentmeter-collector-ext-headless"),
        ("ServiceAccount", "agentmeter-collector-ext"),
        ("ServiceAccount", "otel-collector"),
        ("StatefulSet", "agentmeter-collector-ext"),
    ]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(("filename", "doc"), ALL, ids=[f"{f}:{d['kind']}/{d['metadata']['name']}" for f, d in ALL])
def test_manifest_is_valid(filename, doc, version):
    validate(doc, version)


@pytest.mark.parametrize(
    ("kind", "name", "break_it", "message"),
    [
        ("StatefulSet", "agentmeter-collector-ext", lambda d: d["spec"].update(replicas="two"), "is not of type"),
        (
            "Service",
            "agentmeter-collector-ext",
            lambda d: d["spec"]["ports"][0].update(portt=4317),
            "Additional properties",
        ),
        ("DaemonSet", "agentmeter-collector-ext-node", lambda d: d["spec"].pop("selector"), "'selector' is a required"),
        ("ScaledObject", "research-planner-pool", lambda d: d["spec"].update(cooldownPeriod=-1), "less than"),
        ("SandboxWarmPool", "research-planner-pool", lambda d: d["spec"].pop("sandboxTemplateRef"), "required"),
    ],
)
def test_the_validators_reject_broken_manifests(kind, name, break_it, message):
    broken = copy.deepcopy(find(kind, name))
    break_it(broken)
    with pytest.raises(jsonschema.ValidationError, match=message):
        validate(broken, K8S_VERSIONS[-1])


@pytest.fixture(scope="module")
def receiver_config(tmp_path_factory):
    """The ConfigMap's receiver.yaml, loaded by the receiver's own config loader (unknown keys fail)."""
    path = tmp_path_factory.mktemp("config") / "receiver.yaml"
    path.write_text(find("ConfigMap", "agentmeter-collector-ext")["data"]["receiver.yaml"])
    return load_config(path, writer_id="agentmeter-collector-ext-0")


def _container(workload: dict) -> dict:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return container


def _ports(container: dict) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container["ports"]}


@pytest.mark.parametrize(
    ("kind", "name"), [("StatefulSet", "agentmeter-collector-ext"), ("DaemonSet", "agentmeter-collector-ext-node")]
)
def test_workloads_match_the_receiver_config(kind, name, receiver_config):
    workload = find(kind, name)
    pod = workload["spec"]["template"]
    assert workload["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    container = _container(workload)
    assert container["args"] == ["serve", "--config", "/etc/agentmeter/receiver.yaml"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["config"]["mountPath"] == "/etc/agentmeter" and mounts["config"]["readOnly"] is True
    assert {v["name"] for v in pod["spec"]["volumes"]} | {"wal"} >= set(mounts)
    ports = _ports(container)
    assert ports == {
        "otlp-grpc": parse_endpoint(receiver_config.grpc_endpoint)[1],
        "otlp-http": parse_endpoint(receiver_config.http_endpoint)[1],
        "keda-scaler": parse_endpoint(receiver_config.scaler_endpoint)[1],
    }
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "otlp-http"}
    assert str(receiver_config.data_dir).startswith(mounts["dataset"]["mountPath"] + "/")
    assert mounts["wal"]["mountPath"] == "/wal" and str(receiver_config.wal_path) == "/wal"
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False and security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["spec"]["serviceAccountName"] == "agentmeter-collector-ext"
    find("ServiceAccount", "agentmeter-collector-ext")


def test_statefulset_runs_non_root_with_a_wal_volume_per_pod():
    workload = find("StatefulSet", "agentmeter-collector-ext")
    assert workload["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    (claim,) = workload["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "wal" and claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert workload["spec"]["serviceName"] == "agentmeter-collector-ext-headless"


def test_daemonset_reads_the_kubelet_socket_read_only_with_node_name(receiver_config):
    workload = find("DaemonSet", "agentmeter-collector-ext-node")
    container = _container(workload)
    env = {e["name"]: e for e in container["env"]}
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["AGENTMETER_WRITER_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert float(env["AGENTMETER_PODRESOURCES_INTERVAL_SECONDS"]["value"]) > 0
    socket = Path(env["AGENTMETER_PODRESOURCES_SOCKET"]["value"])
    assert socket == receiver_config.podresources_socket  # the config default is the kubelet's path
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "pod-resources"]
    assert mount == {"name": "pod-resources", "mountPath": str(socket.parent), "readOnly": True}
    (volume,) = [v for v in workload["spec"]["template"]["spec"]["volumes"] if v["name"] == "pod-resources"]
    assert volume["hostPath"] == {"path": "/var/lib/kubelet/pod-resources", "type": "Directory"}


def test_services_select_the_receivers_and_expose_its_ports():
    statefulset = find("StatefulSet", "agentmeter-collector-ext")
    labels = statefulset["spec"]["template"]["metadata"]["labels"]
    container_ports = _ports(_container(statefulset))
    service = find("Service", "agentmeter-collector-ext")
    assert service["spec"]["selector"].items() <= labels.items()
    assert {p["name"]: (p["port"], container_ports[p["targetPort"]]) for p in service["spec"]["ports"]} == {
        "otlp-grpc": (4317, 4317),
        "otlp-http": (4318, 4318),
        "keda-scaler": (9090, 9090),
    }
    headless = find("Service", "agentmeter-collector-ext-headless")
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["selector"].items() <= labels.items()
    # the Collector's loadbalancing exporter resolves exactly this Service, on its OTLP port
    collector = yaml.safe_load((ROOT / "otel-config" / "collector.yaml").read_text())
    resolver = collector["exporters"]["loadbalancing"]["resolver"]["k8s"]
    assert resolver["service"] == f"{headless['metadata']['name']}.{headless['metadata']['namespace']}"
    assert resolver["ports"] == [p["port"] for p in headless["spec"]["ports"]]


def test_keda_scales_the_warm_pool_through_the_external_scaler():
    scaled = find("ScaledObject", "research-planner-pool")
    pool = find("SandboxWarmPool", "research-planner-pool")
    target = scaled["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        pool["apiVersion"],
        pool["kind"],
        pool["metadata"]["name"],
    )
    assert scaled["metadata"]["namespace"] == pool["metadata"]["namespace"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "external"
    service = find("Service", "agentmeter-collector-ext")
    host, port = parse_endpoint(trigger["metadata"]["scalerAddress"])
    assert host == f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
    assert port == next(p["port"] for p in service["spec"]["ports"] if p["name"] == "keda-scaler")
    assert trigger["metadata"]["agent"] == pool["metadata"]["labels"]["agentmeter.io/agent"]


def test_collector_rbac_covers_k8sattributes_and_the_resolver():
    role = find("ClusterRole", "agentmeter-otel-collector")
    granted = {
        (group, resource) for rule in role["rules"] for group in rule["apiGroups"] for resource in rule["resources"]
    }
    assert {("", "pods"), ("", "namespaces"), ("", "nodes"), ("apps", "replicasets")} <= granted
    endpoints = find("Role", "agentmeter-otel-collector-endpoints")
    assert {r for rule in endpoints["rules"] for r in rule["resources"]} == {"endpoints", "endpointslices"}
    for binding in (
        find("ClusterRoleBinding", "agentmeter-otel-collector"),
        find("RoleBinding", "agentmeter-otel-collector-endpoints"),
    ):
        (subject,) = binding["subjects"]
        assert find("ServiceAccount", subject["name"])["metadata"]["namespace"] == subject["namespace"]


def test_recommend_default_scaler_address_is_this_service():
    """`analyze recommend` emits ScaledObjects whose default scalerAddress must reach the deployed scaler."""
    from analyzer.recommend import DEFAULT_SCALER_ADDRESS

    (trigger,) = find("ScaledObject", "research-planner-pool")["spec"]["triggers"]
    assert trigger["metadata"]["scalerAddress"] == DEFAULT_SCALER_ADDRESS
