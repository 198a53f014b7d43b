"""deploy/: every kustomize overlay rendered by a real `kubectl kustomize`, every object validated strictly, every
pod held to the Pod Security level its namespace enforces, checkov run over it all, and the pieces agree.

- Kubernetes' own kinds: the OpenAPI schemas kubernetes-validate ships, strict (unknown fields fail), for every
  version from 1.34 (DRA resource.k8s.io/v1 is GA there) to 1.37; custom resources: the schemas derived from
  their upstream CRDs (deploy/crd-schemas/, tests/crd_schemas.py), with their CEL rules checked here by hand.
- Pod Security: the checks of pod-security-admission's policy/ (tests/pod_security.py) at the level and
  version the pod's namespace enforces; the node DaemonSet, in a `privileged` namespace, fails only the checks
  its kubelet socket and node WAL need (issue 12, finding 1).
- checkov (the IaC scanner, from its own venv: make venv) finds nothing; each suppression is an annotation on
  the object whose text says why.
- The shared dataset: one group and fsGroup for every writer (finding 2); the warm pool carries no replicas
  for KEDA to fight over and its ScaledObject asks for unclaimed sandboxes (findings 3 and 4); the Collector
  gateway runs otel-config/ and reaches the receivers; NetworkPolicy, PodDisruptionBudget, ServiceMonitor and
  PrometheusRule point at what exists.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from crd_schemas import schemas, validate_custom_resource
from kubernetes_validate.utils import SchemaNotFoundError, all_versions
from pod_security import violations

from analyzer.recommend import DEFAULT_SCALER_ADDRESS
from collector_ext.config import load_config, parse_endpoint
from collector_ext.gpu.metrics import GpuMetricsSnapshot
from collector_ext.keda.scaler import UNCLAIMED, parse_selector
from collector_ext.pricing.live import LivePrices
from collector_ext.receiver.telemetry import Telemetry
from collector_ext.storage.batch_writer import WriterSnapshot
from collector_ext.traces.cost_meter import CostMeter
from collector_ext.traces.pipeline import PipelineSnapshot, PipelineStats

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
OVERLAYS = sorted(p.name for p in (DEPLOY / "overlays").iterdir() if (p / "kustomization.yaml").exists())
K8S_VERSIONS = ["1.34", "1.35", "1.36", "1.37"]
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod")
DATASET_GROUP = 65532


@cache
def render(overlay: str) -> tuple[dict, ...]:
    done = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return tuple(d for d in yaml.safe_load_all(done.stdout) if d)


def objects() -> Iterator[tuple[str, dict]]:
    for overlay in OVERLAYS:
        for doc in render(overlay):
            yield overlay, doc


def find(overlay: str, kind: str, name: str, namespace: str | None = None) -> dict:
    (doc,) = [
        d
        for d in render(overlay)
        if d["kind"] == kind
        and d["metadata"]["name"] == name
        and (namespace is None or d["metadata"].get("namespace") == namespace)
    ]
    return doc


def kinds(overlay: str, kind: str) -> list[dict]:
    return [d for d in render(overlay) if d["kind"] == kind]


def pod_template(workload: dict) -> dict:
    if workload["kind"] == "Pod":
        return workload
    if workload["kind"] == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]
    return workload["spec"]["template"]


def container(workload: dict) -> dict:
    (found,) = pod_template(workload)["spec"]["containers"]
    return found


def test_every_overlay_renders_the_expected_objects() -> None:
    assert OVERLAYS == ["default", "gpu", "object-storage", "warm-pool-example"]
    default = sorted((d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in render("default"))
    named = [(kind, ns, re.sub(r"-[a-z0-9]{10}$", "-<hash>", name)) for kind, ns, name in default]
    assert named == [
        ("ClusterRole", None, "agentmeter-otel-collector"),
        ("ClusterRoleBinding", None, "agentmeter-otel-collector"),
        ("ConfigMap", "agentmeter", "agentmeter-receiver-<hash>"),
        ("ConfigMap", "agentmeter", "otel-collector-config-<hash>"),
        ("CronJob", "agentmeter", "agentmeter-compactor"),
        ("Deployment", "agentmeter", "agentmeter-analyzer"),
        ("Deployment", "agentmeter", "otel-collector"),
        ("Namespace", None, "agentmeter"),
        ("NetworkPolicy", "agentmeter", "agentmeter-analyzer"),
        ("NetworkPolicy", "agentmeter", "agentmeter-collector-ext"),
        ("NetworkPolicy", "agentmeter", "default-deny-ingress"),
        ("NetworkPolicy", "agentmeter", "otel-collector"),
        ("PersistentVolumeClaim", "agentmeter", "agentmeter-dataset"),
        ("PodDisruptionBudget", "agentmeter", "agentmeter-collector-ext"),
        ("PodDisruptionBudget", "agentmeter", "otel-collector"),
        ("PrometheusRule", "agentmeter", "agentmeter"),
        ("PrometheusRule", "agentmeter", "agentmeter-budgets"),
        ("Role", "agentmeter", "agentmeter-otel-collector-endpoints"),
        ("RoleBinding", "agentmeter", "agentmeter-otel-collector-endpoints"),
        ("Service", "agentmeter", "agentmeter-analyzer"),
        ("Service", "agentmeter", "agentmeter-collector-ext"),
        ("Service", "agentmeter", "agentmeter-collector-ext-headless"),
        ("Service", "agentmeter", "otel-collector"),
        ("ServiceAccount", "agentmeter", "agentmeter-analyzer"),
        ("ServiceAccount", "agentmeter", "agentmeter-collector-ext"),
        ("ServiceAccount", "agentmeter", "otel-collector"),
        ("ServiceMonitor", "agentmeter", "agentmeter-collector-ext"),
        ("ServiceMonitor", "agentmeter", "otel-collector"),
        ("StatefulSet", "agentmeter", "agentmeter-collector-ext"),
    ]
    gpu_only = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in render("gpu")} - set(
        default
    )
    assert {(kind, ns) for kind, ns, _ in gpu_only} == {
        ("Namespace", None),
        ("ServiceAccount", "agentmeter-node"),
        ("ConfigMap", "agentmeter-node"),
        ("PersistentVolumeClaim", "agentmeter-node"),
        ("DaemonSet", "agentmeter-node"),
        ("Service", "agentmeter-node"),
        ("NetworkPolicy", "agentmeter-node"),
        ("ServiceMonitor", "agentmeter-node"),
        ("PersistentVolume", None),
    }
    extra = {(d["kind"], d["metadata"].get("namespace")) for d in render("warm-pool-example")} - {
        (d["kind"], d["metadata"].get("namespace")) for d in render("default")
    }
    assert extra == {("SandboxWarmPool", "research"), ("ScaledObject", "research")}
    # object storage: the bucket's settings instead of the shared volume
    in_bucket = {(k, ns, re.sub(r"-[a-z0-9]{10}$", "-<hash>", n)) for k, ns, n in _names("object-storage")}
    in_default = {(k, ns, re.sub(r"-[a-z0-9]{10}$", "-<hash>", n)) for k, ns, n in _names("default")}
    assert in_bucket - in_default == {("ConfigMap", "agentmeter", "agentmeter-object-store-<hash>")}
    assert in_default - in_bucket == {("PersistentVolumeClaim", "agentmeter", "agentmeter-dataset")}


def _names(overlay: str) -> list[tuple[str, str | None, str]]:
    return [(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in render(overlay)]


def validate(doc: dict, version: str) -> None:
    if (doc["apiVersion"], doc["kind"]) in schemas():
        validate_custom_resource(doc)
    else:
        kubernetes_validate.validate(doc, version, strict=True)


ALL = list(objects())


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_is_valid_for_kubernetes(version: str) -> None:
    for overlay, doc in ALL:
        try:
            validate(doc, version)
        except (jsonschema.ValidationError, SchemaNotFoundError) as err:
            pytest.fail(f"{overlay}: {doc['kind']}/{doc['metadata']['name']} on {version}: {err.message}")


def test_kubernetes_validate_ships_every_version_we_check() -> None:
    shipped = all_versions()
    assert set(K8S_VERSIONS) <= {".".join(v.split(".")[:2]) for v in shipped}


@pytest.mark.parametrize(
    ("kind", "name", "break_it", "message"),
    [
        ("StatefulSet", "agentmeter-collector-ext", lambda d: d["spec"].update(replicas="two"), "is not of type"),
        ("Service", "otel-collector", lambda d: d["spec"]["ports"][0].update(portt=4317), "Additional properties"),
        ("Deployment", "agentmeter-analyzer", lambda d: d["spec"].pop("selector"), "'selector' is a required"),
        ("ServiceMonitor", "otel-collector", lambda d: d["spec"].update(endpoint=[]), "Additional properties"),
        ("PrometheusRule", "agentmeter", lambda d: d["spec"]["groups"][0].pop("name"), "'name' is a required"),
        ("ScaledObject", "research-planner-scaler", lambda d: d["spec"].update(pollingInterval=0), "less than"),
        ("SandboxWarmPool", "research-planner-warm-pool", lambda d: d["spec"].pop("sandboxTemplateRef"), "required"),
    ],
)
def test_the_validators_reject_broken_objects(kind, name, break_it, message) -> None:
    broken = copy.deepcopy(find("warm-pool-example", kind, name))
    break_it(broken)
    with pytest.raises(jsonschema.ValidationError, match=message):
        validate(broken, K8S_VERSIONS[-1])


def test_cel_rules_of_the_crds_hold() -> None:
    """KEDA's CRD: minReplicaCount <= maxReplicaCount (default 100), a CEL rule the derived schema lists."""
    for _, doc in ALL:
        if doc["kind"] == "ScaledObject":
            spec = doc["spec"]
            assert spec.get("minReplicaCount", 0) <= spec.get("maxReplicaCount", 100)


# -- Pod Security -------------------------------------------------------------------------------------------


def enforced(overlay: str, namespace: str) -> tuple[str, str]:
    labels = find(overlay, "Namespace", namespace)["metadata"]["labels"]
    return labels["pod-security.kubernetes.io/enforce"], labels.get("pod-security.kubernetes.io/enforce-version")


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_pod_passes_the_pod_security_level_its_namespace_enforces(version: str) -> None:
    at = tuple(int(part) for part in version.split("."))
    checked = []
    for overlay, doc in ALL:
        if doc["kind"] not in WORKLOADS:
            continue
        level, pinned = enforced(overlay, doc["metadata"]["namespace"])
        assert pinned == "latest"
        template = pod_template(doc)
        failed = violations(template["spec"], template.get("metadata") or {}, level, at)
        assert failed == set(), f"{overlay}: {doc['kind']}/{doc['metadata']['name']} fails {level}: {failed}"
        checked.append((doc["metadata"]["namespace"], level))
    assert ("agentmeter", "restricted") in checked and ("agentmeter-node", "privileged") in checked


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_node_daemonset_takes_only_what_it_needs(version: str) -> None:
    """Baseline forbids its hostPath volumes (pod-security-admission policy/check_hostPathVolumes.go): so its
    namespace is privileged. Held to restricted, it fails exactly the checks the kubelet's root-only socket and
    the node's WAL need, nothing more: no privileged, no capability, no host namespace or port."""
    at = tuple(int(part) for part in version.split("."))
    daemonset = find("gpu", "DaemonSet", "agentmeter-node")
    spec = daemonset["spec"]["template"]["spec"]
    assert violations(spec, {}, "baseline", at) == {"hostPathVolumes"}
    assert violations(spec, {}, "restricted", at) == {"restrictedVolumes", "runAsNonRoot", "runAsUser"}
    host_paths = {v["name"]: v["hostPath"] for v in spec["volumes"] if "hostPath" in v}
    assert host_paths == {
        "pod-resources": {"path": "/var/lib/kubelet/pod-resources", "type": "Directory"},
        "wal": {"path": "/var/lib/agentmeter/wal", "type": "DirectoryOrCreate"},
    }
    mounts = {m["name"]: m for m in container(daemonset)["volumeMounts"]}
    assert mounts["pod-resources"] == {
        "name": "pod-resources",
        "mountPath": "/var/lib/kubelet/pod-resources",
        "readOnly": True,
    }
    assert enforced("gpu", "agentmeter-node")[0] == "privileged"
    namespaces = {d["metadata"].get("namespace") for d in render("gpu") if d["kind"] in WORKLOADS}
    assert namespaces == {"agentmeter", "agentmeter-node"}
    node_workloads = [
        d for d in render("gpu") if d["kind"] in WORKLOADS and d["metadata"]["namespace"] == "agentmeter-node"
    ]
    assert [d["kind"] for d in node_workloads] == ["DaemonSet"]  # nothing else shares its namespace


def test_the_pod_security_checks_catch_what_they_name() -> None:
    """Each check on a pod built to fail it (and the old deploy/'s DaemonSet under baseline)."""
    at = (1, 37)
    good = copy.deepcopy(find("default", "StatefulSet", "agentmeter-collector-ext")["spec"]["template"]["spec"])
    assert violations(good, {}, "restricted", at) == set()
    cases = {
        "hostNamespaces": lambda s: s.update(hostNetwork=True),
        "privileged": lambda s: s["containers"][0]["securityContext"].update(privileged=True),
        "capabilities_restricted": lambda s: s["containers"][0]["securityContext"]["capabilities"].update(add=["NET_RAW"]),
        "restrictedVolumes": lambda s: s["volumes"].append({"name": "x", "hostPath": {"path": "/"}}),
        "hostPorts": lambda s: s["containers"][0]["ports"][0].update(hostPort=4317),
        "allowPrivilegeEscalation": lambda s: s["containers"][0]["securityContext"].pop("allowPrivilegeEscalation"),
        "runAsNonRoot": lambda s: s["securityContext"].pop("runAsNonRoot"),
        "runAsUser": lambda s: s["containers"][0]["securityContext"].update(runAsUser=0),
        "seccompProfile_restricted": lambda s: s["securityContext"].pop("seccompProfile"),
        "sysctls": lambda s: s["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]),
        "hostProbesAndHostLifecycle": lambda s: s["containers"][0]["livenessProbe"]["httpGet"].update(host="10.0.0.1"),
        "seLinuxOptions": lambda s: s["securityContext"].update(seLinuxOptions={"type": "spc_t"}),
        "procMount_restricted": lambda s: s["containers"][0]["securityContext"].update(procMount="Unmasked"),
        "windowsHostProcess": lambda s: s["securityContext"].update(windowsOptions={"hostProcess": True}),
        "appArmorProfile": lambda s: s["securityContext"].update(appArmorProfile={"type": "Unconfined"}),
    }  # fmt: skip
    for check, break_it in cases.items():
        spec = copy.deepcopy(good)
        break_it(spec)
        assert check in violations(spec, {}, "restricted", at), check
    # the DaemonSet as issue 12 found it, in a namespace enforcing baseline: its pods were never created
    old = copy.deepcopy(find("gpu", "DaemonSet", "agentmeter-node")["spec"]["template"]["spec"])
    assert violations(old, {}, "baseline", at) == {"hostPathVolumes"}
    # a user namespace relaxes runAsNonRoot / runAsUser from 1.35 on, not before
    userns = copy.deepcopy(old) | {"hostUsers": False}
    assert violations(userns, {}, "restricted", (1, 34)) == {"restrictedVolumes", "runAsNonRoot", "runAsUser"}
    assert violations(userns, {}, "restricted", (1, 35)) == {"restrictedVolumes"}


# -- checkov ------------------------------------------------------------------------------------------------


def checkov_binary() -> str:
    for candidate in (os.environ.get("CHECKOV"), str(ROOT / ".venv" / "tools" / "checkov" / "bin" / "checkov")):
        if candidate and Path(candidate).exists():
            return candidate
    found = shutil.which("checkov")
    assert found, "checkov not found: `make venv` installs it in .venv/tools/checkov (or set CHECKOV)"
    return found


def test_checkov_finds_nothing_and_every_suppression_says_why(tmp_path: Path) -> None:
    for overlay in OVERLAYS:
        (tmp_path / f"{overlay}.yaml").write_text(yaml.safe_dump_all(render(overlay), sort_keys=False))
    done = subprocess.run(
        [checkov_binary(), "-d", str(tmp_path), "--framework", "kubernetes", "--skip-download", "--quiet",
         "--compact", "-o", "json"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    report = json.loads(done.stdout)
    (results,) = report if isinstance(report, list) else [report]
    assert results["summary"]["parsing_errors"] == 0
    failed = [(f["check_id"], f["resource"]) for f in results["results"]["failed_checks"]]
    assert failed == []
    assert results["summary"]["passed"] > 100 and results["summary"]["skipped"] > 0
    # every suppression is an annotation `checkov.io/skipN: CHECK_ID=<why>` with a real reason
    for _, doc in ALL:
        for key, value in (doc["metadata"].get("annotations") or {}).items():
            if key.startswith("checkov.io/skip"):
                check, _, reason = value.partition("=")
                assert re.fullmatch(r"CKV2?_K8S_\d+", check) and len(reason.split()) >= 8, (key, value)


# -- the receivers and the shared dataset ------------------------------------------------------------------


def receiver_config(overlay: str, namespace: str, tmp_path: Path, **env: str):
    (configmap,) = [
        d
        for d in kinds(overlay, "ConfigMap")
        if d["metadata"]["namespace"] == namespace and d["metadata"]["name"].startswith("agentmeter-receiver-")
    ]
    path = tmp_path / f"{namespace}.yaml"
    path.write_text(configmap["data"]["receiver.yaml"])
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        return load_config(path, writer_id="agentmeter-0"), configmap["metadata"]["name"]


def test_receivers_match_their_config(tmp_path: Path) -> None:
    config, configmap = receiver_config("default", "agentmeter", tmp_path)
    statefulset = find("default", "StatefulSet", "agentmeter-collector-ext")
    pod = statefulset["spec"]["template"]
    assert statefulset["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    receiver = container(statefulset)
    assert receiver["args"] == ["serve", "--config", "/etc/agentmeter/receiver.yaml"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == configmap  # kustomize's hashed name, referenced
    ports = {p["name"]: p["containerPort"] for p in receiver["ports"]}
    # the pod's addresses, not the receiver's loopback defaults
    assert [parse_endpoint(e)[0] for e in (config.grpc_endpoint, config.http_endpoint, config.scaler_endpoint)] == [
        "0.0.0.0"
    ] * 3
    assert ports == {
        "otlp-grpc": parse_endpoint(config.grpc_endpoint)[1],
        "otlp-http": parse_endpoint(config.http_endpoint)[1],
        "keda-scaler": parse_endpoint(config.scaler_endpoint)[1],
    }
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert receiver[probe]["httpGet"] == {"path": "/healthz", "port": "otlp-http"}
    mounts = {m["name"]: m["mountPath"] for m in receiver["volumeMounts"]}
    assert str(config.data_dir).startswith(mounts["dataset"] + "/") and str(config.wal_path) == mounts["wal"]
    assert config.max_recv_msg_mib == 64 and config.gpu_drivers == ["gpu.nvidia.com"]
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "wal" and claim["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_the_node_receiver_polls_the_kubelet_and_listens_only_where_it_must(tmp_path: Path) -> None:
    daemonset = find("gpu", "DaemonSet", "agentmeter-node")
    receiver = container(daemonset)
    env = {e["name"]: e for e in receiver["env"]}
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["AGENTMETER_WRITER_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    values = {name: e["value"] for name, e in env.items() if "value" in e}
    config, configmap = receiver_config("gpu", "agentmeter-node", tmp_path, **values)
    assert (
        configmap
        == {v["name"]: v for v in daemonset["spec"]["template"]["spec"]["volumes"]}["config"]["configMap"]["name"]
    )
    assert config.podresources_interval_seconds == 10
    assert config.podresources_socket == Path("/var/lib/kubelet/pod-resources/kubelet.sock")
    assert parse_endpoint(config.grpc_endpoint)[0] == "127.0.0.1" and config.scaler_endpoint is None
    assert {p["name"]: p["containerPort"] for p in receiver["ports"]} == {
        "http": parse_endpoint(config.http_endpoint)[1]
    }
    assert str(config.wal_path) == "/wal"


def test_every_writer_of_the_shared_dataset_has_its_group() -> None:
    """Finding 2: one gid and fsGroup for every writer (the node one is uid 0, the others 65532), so the
    group-writable directories the writers create (collector_ext/storage/dataset_files.py) admit them all."""
    writers = []
    for overlay in OVERLAYS:
        for doc in render(overlay):
            if doc["kind"] not in WORKLOADS:
                continue
            spec = pod_template(doc)["spec"]
            claims = [v["persistentVolumeClaim"] for v in spec["volumes"] if "persistentVolumeClaim" in v]
            if not any(c["claimName"] == "agentmeter-dataset" for c in claims):
                continue
            security = spec["securityContext"]
            assert (security["runAsGroup"], security["fsGroup"]) == (DATASET_GROUP, DATASET_GROUP), doc["metadata"]
            read_only = all(c.get("readOnly") for c in claims if c["claimName"] == "agentmeter-dataset")
            writers.append((doc["metadata"]["name"], security["runAsUser"], read_only))
    assert set(writers) == {
        ("agentmeter-collector-ext", 65532, False),
        ("agentmeter-analyzer", 65532, True),
        ("agentmeter-compactor", 65532, False),
        ("agentmeter-node", 0, False),
    }


def test_both_namespaces_claim_one_share_in_the_gpu_overlay() -> None:
    volumes = {d["metadata"]["name"]: d for d in kinds("gpu", "PersistentVolume")}
    claims = {d["metadata"]["namespace"]: d for d in kinds("gpu", "PersistentVolumeClaim")}
    assert set(claims) == {"agentmeter", "agentmeter-node"}
    shares = set()
    for namespace, claim in claims.items():
        volume = volumes[claim["spec"]["volumeName"]]
        assert volume["spec"]["claimRef"] == {"namespace": namespace, "name": claim["metadata"]["name"]}
        assert claim["spec"]["storageClassName"] == volume["spec"]["storageClassName"] == ""
        assert volume["spec"]["accessModes"] == claim["spec"]["accessModes"] == ["ReadWriteMany"]
        shares.add(json.dumps(volume["spec"]["nfs"], sort_keys=True))
    assert len(shares) == 1


# -- compaction and object storage -------------------------------------------------------------------------


def resolved_env(overlay: str, main: dict) -> dict[str, str | tuple[str, str, bool]]:
    """A container's environment as the kubelet makes it: values, ConfigMap keys read from the rendered
    ConfigMap (an optional key that is absent: no variable), Secret keys as ("secret", name, optional)."""
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in kinds(overlay, "ConfigMap")}
    env: dict[str, str | tuple[str, str, bool]] = {}
    for entry in main.get("env", []):
        source = entry.get("valueFrom", {})
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            data = configmaps[ref["name"]]  # a ConfigMap that exists (kustomize's hashed name, referenced)
            if ref["key"] in data:
                env[entry["name"]] = data[ref["key"]]
            else:
                assert ref.get("optional"), (entry, "a required key that is not there")
        else:
            ref = source["secretKeyRef"]
            assert ref["key"] == entry["name"]
            env[entry["name"]] = ("secret", ref["name"], ref.get("optional", False))
    assert "envFrom" not in main
    return env


def expand(args: list[str], env: dict) -> list[str]:
    """$(VAR) in args, as the kubelet expands it from the container's environment."""
    return [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg) for arg in args]


@pytest.mark.parametrize("overlay", ["default", "object-storage"])
def test_the_compactor_runs_the_real_command_hourly_one_at_a_time(overlay: str, tmp_path: Path) -> None:
    cronjob = find(overlay, "CronJob", "agentmeter-compactor")
    spec = cronjob["spec"]
    assert (spec["schedule"], spec["concurrencyPolicy"]) == ("17 * * * *", "Forbid")  # one run per dataset
    assert spec["jobTemplate"]["spec"]["activeDeadlineSeconds"] < 3600  # over before the next hour's run
    pod = pod_template(cronjob)["spec"]
    # the receivers' ServiceAccount: their cloud identity (IRSA, workload identity) writes and deletes objects
    assert (
        pod["serviceAccountName"]
        == find(overlay, "StatefulSet", "agentmeter-collector-ext")["spec"]["template"]["spec"]["serviceAccountName"]
    )
    main = container(cronjob)
    args = expand(main["args"], resolved_env(overlay, main))
    assert args[0] == "compact" and args[args.index("--retention-days") + 1] == "400"
    location = args[args.index("--data-dir") + 1]
    if overlay == "default":
        mounts = {m["name"]: m["mountPath"] for m in main["volumeMounts"]}
        assert location == mounts["dataset"] + "/dataset"
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["dataset"]["persistentVolumeClaim"] == {"claimName": "agentmeter-dataset"}
    else:
        assert location == "s3://agentmeter-dataset/prod"
    # the real command takes these arguments (on an empty local dataset in place of the pod's)
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    args[args.index("--data-dir") + 1] = str(dataset)
    done = subprocess.run(
        [sys.executable, "-m", "collector_ext.cli", *args], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["files_merged"] == 0


def test_the_object_storage_overlay_writes_the_bucket_with_a_durable_wal_and_secret_refs(tmp_path: Path) -> None:
    statefulset = find("object-storage", "StatefulSet", "agentmeter-collector-ext")
    receiver = container(statefulset)
    env = resolved_env("object-storage", receiver)
    assert env["AWS_REGION"] == "us-east-1" and "AWS_ENDPOINT_URL" not in env  # set only for non-AWS S3 APIs
    given = {name: value for name, value in env.items() if isinstance(value, str)}
    config, _ = receiver_config("object-storage", "agentmeter", tmp_path, **given)  # the receiver's own loader
    assert config.data_dir == "s3://agentmeter-dataset/prod"
    # the WAL on the StatefulSet's own PersistentVolume per pod (it survives pod deletion; an emptyDir would not)
    mounts = {m["name"]: m["mountPath"] for m in receiver["volumeMounts"]}
    assert str(config.wal_path) == mounts["wal"] == "/wal"
    pod_volumes = {v["name"] for v in statefulset["spec"]["template"]["spec"]["volumes"]}
    assert "wal" not in pod_volumes  # so `wal` is the claim template's volume
    assert [c["metadata"]["name"] for c in statefulset["spec"]["volumeClaimTemplates"]] == ["wal"]
    # no shared volume: nothing claims agentmeter-dataset or mounts /data
    for doc in render("object-storage"):
        if doc["kind"] in WORKLOADS:
            spec = pod_template(doc)["spec"]
            assert not [v for v in spec["volumes"] if "persistentVolumeClaim" in v], doc["metadata"]["name"]
            assert "/data" not in {m["mountPath"] for m in container(doc)["volumeMounts"]}
    # credentials only by reference: the writers' Secret for the receivers and the compactor, the readers' for
    # the analyzer, optional (IRSA / workload identity need none)
    analyzer = find("object-storage", "Deployment", "agentmeter-analyzer")
    compactor = find("object-storage", "CronJob", "agentmeter-compactor")
    for workload, secret in ((statefulset, "agentmeter-s3-writer"), (compactor, "agentmeter-s3-writer"),
                             (analyzer, "agentmeter-s3-reader")):  # fmt: skip
        found = resolved_env("object-storage", container(workload))
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            assert found[key] == ("secret", secret, True), (workload["metadata"]["name"], key)
    # the analyzer reads the bucket through its cache, on a volume of its own
    main = container(analyzer)
    analyzer_env = resolved_env("object-storage", main)
    args = expand(main["args"], analyzer_env)
    assert args[:3] == ["serve", "--data", "s3://agentmeter-dataset/prod"]
    assert {m["name"]: m["mountPath"] for m in main["volumeMounts"]}["cache"] == analyzer_env["AGENTMETER_CACHE_DIR"]


# -- Services, the Collector, KEDA -------------------------------------------------------------------------


def selected(overlay: str, namespace: str, selector: dict) -> list[dict]:
    return [
        d
        for d in render(overlay)
        if d["kind"] in WORKLOADS
        and d["metadata"]["namespace"] == namespace
        and selector.items() <= pod_template(d)["metadata"]["labels"].items()
    ]


def test_every_service_selects_a_workload_with_its_target_ports() -> None:
    for overlay in OVERLAYS:
        for service in kinds(overlay, "Service"):
            (workload,) = selected(overlay, service["metadata"]["namespace"], service["spec"]["selector"])
            names = {p["name"] for p in container(workload)["ports"]}
            assert {p["targetPort"] for p in service["spec"]["ports"]} <= names, service["metadata"]["name"]


def test_the_collector_gateway_runs_otel_config_and_reaches_the_receivers() -> None:
    collector = find("default", "Deployment", "otel-collector")
    image = container(collector)["image"]
    assert image.startswith("otel/opentelemetry-collector-contrib:")
    (configmap,) = [
        d for d in kinds("default", "ConfigMap") if d["metadata"]["name"].startswith("otel-collector-config-")
    ]
    assert configmap["data"]["collector.yaml"] == (ROOT / "otel-config" / "collector.yaml").read_text()
    volumes = {v["name"]: v for v in collector["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == configmap["metadata"]["name"]
    assert container(collector)["args"] == ["--config=/conf/collector.yaml"]
    config = yaml.safe_load(configmap["data"]["collector.yaml"])
    headless = find("default", "Service", "agentmeter-collector-ext-headless")
    resolver = config["exporters"]["load_balancing"]["resolver"]["k8s"]
    assert resolver["service"] == f"{headless['metadata']['name']}.{headless['metadata']['namespace']}"
    assert resolver["ports"] == [p["port"] for p in headless["spec"]["ports"]]
    service = find("default", "Service", "agentmeter-collector-ext")
    endpoint = config["exporters"]["otlp_grpc/agentmeter-metrics"]["endpoint"]
    assert endpoint == f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local:4317"
    # the ports the Collector listens on are the ones its container and Service expose
    ports = {p["name"]: p["containerPort"] for p in container(collector)["ports"]}
    receivers = config["receivers"]["otlp"]["protocols"]
    assert parse_endpoint(receivers["grpc"]["endpoint"])[1] == ports["otlp-grpc"]
    assert parse_endpoint(receivers["http"]["endpoint"])[1] == ports["otlp-http"]
    assert parse_endpoint(config["extensions"]["health_check"]["endpoint"])[1] == ports["health"]
    telemetry = config["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]["prometheus"]
    assert telemetry["port"] == ports["metrics"]
    role = find("default", "ClusterRole", "agentmeter-otel-collector")
    granted = {(g, r) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert {("", "pods"), ("", "namespaces"), ("", "nodes"), ("apps", "replicasets")} <= granted
    endpoints = find("default", "Role", "agentmeter-otel-collector-endpoints")
    assert {r for rule in endpoints["rules"] for r in rule["resources"]} == {"endpoints", "endpointslices"}
    for binding in (
        find("default", "ClusterRoleBinding", "agentmeter-otel-collector"),
        find("default", "RoleBinding", "agentmeter-otel-collector-endpoints"),
    ):
        (subject,) = binding["subjects"]
        assert find("default", "ServiceAccount", subject["name"], subject["namespace"])


def test_the_analyzer_serves_the_dataset_read_only() -> None:
    analyzer = find("default", "Deployment", "agentmeter-analyzer")
    main = container(analyzer)
    assert main["command"] == ["analyze"] and main["args"][:3] == ["serve", "--data", "/data/dataset"]
    port = int(main["args"][main["args"].index("--port") + 1])
    assert {p["name"]: p["containerPort"] for p in main["ports"]} == {"http": port}
    assert main["args"][main["args"].index("--host") + 1] == "0.0.0.0"
    assert {m["name"]: m.get("readOnly", False) for m in main["volumeMounts"]} == {"dataset": True, "tmp": False}


def test_keda_scales_a_pool_without_replicas_on_unclaimed_sandboxes() -> None:
    """Findings 3 and 4: the ScaledObject owns the pool's spec.replicas (no replicas in the pool), and asks
    agentmeter's scaler for the unclaimed sandboxes wanted, a metric the scaler accepts."""
    scaled = find("warm-pool-example", "ScaledObject", "research-planner-scaler")
    target = scaled["spec"]["scaleTargetRef"]
    pool = find("warm-pool-example", target["kind"], target["name"], scaled["metadata"]["namespace"])
    assert target["apiVersion"] == pool["apiVersion"] and "replicas" not in pool["spec"]
    (trigger,) = scaled["spec"]["triggers"]
    assert (trigger["type"], trigger["metricType"]) == ("external", "AverageValue")
    selector = parse_selector(trigger["metadata"])
    assert (selector.target, selector.warm_floor) == (UNCLAIMED, scaled["spec"]["minReplicaCount"])
    assert selector.agent == pool["metadata"]["labels"]["agentmeter.io/agent"]
    service = find("warm-pool-example", "Service", "agentmeter-collector-ext")
    host, port = parse_endpoint(trigger["metadata"]["scalerAddress"])
    assert host == f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
    assert port == next(p["port"] for p in service["spec"]["ports"] if p["name"] == "keda-scaler")
    assert trigger["metadata"]["scalerAddress"] == DEFAULT_SCALER_ADDRESS  # what `analyze recommend` emits


# -- NetworkPolicy, PodDisruptionBudget, ServiceMonitor, PrometheusRule ------------------------------------


def allowed_ingress(overlay: str, workload: dict) -> set[tuple[str, str]]:
    """(from, port name) pairs the NetworkPolicies of its namespace let in."""
    labels = pod_template(workload)["metadata"]["labels"]
    allowed = set()
    for policy in kinds(overlay, "NetworkPolicy"):
        if policy["metadata"]["namespace"] != workload["metadata"]["namespace"]:
            continue
        if not (policy["spec"]["podSelector"].get("matchLabels") or {}).items() <= labels.items():
            continue
        for rule in policy["spec"].get("ingress", []):
            for peer in rule["from"]:
                if "podSelector" in peer:
                    who = "pods:" + peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
                else:
                    match = peer["namespaceSelector"].get("matchLabels") or {}
                    who = "namespace:" + (next(iter(match.values())) if match else "*")
                allowed |= {(who, p["port"]) for p in rule["ports"]}
    return allowed


def test_network_policies_deny_by_default_and_let_in_only_the_peers() -> None:
    for overlay in OVERLAYS:
        for namespace in {d["metadata"]["namespace"] for d in render(overlay) if d["kind"] in WORKLOADS}:
            deny = find(overlay, "NetworkPolicy", "default-deny-ingress", namespace)
            assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    receivers = find("gpu", "StatefulSet", "agentmeter-collector-ext")
    assert allowed_ingress("gpu", receivers) == {
        ("pods:otel-collector", "otlp-grpc"),
        ("pods:otel-collector", "otlp-http"),
        ("namespace:keda", "keda-scaler"),
        ("namespace:monitoring", "otlp-http"),
    }
    assert allowed_ingress("gpu", find("gpu", "Deployment", "otel-collector")) == {
        ("namespace:*", "otlp-grpc"),
        ("namespace:*", "otlp-http"),
        ("namespace:monitoring", "metrics"),
    }
    assert allowed_ingress("gpu", find("gpu", "Deployment", "agentmeter-analyzer")) == {("namespace:true", "http")}
    assert allowed_ingress("gpu", find("gpu", "DaemonSet", "agentmeter-node")) == {("namespace:monitoring", "http")}
    for overlay in OVERLAYS:  # every port a policy names is a port of the pods it selects
        for workload in (d for d in render(overlay) if d["kind"] in WORKLOADS):
            names = {p["name"] for p in container(workload).get("ports", [])}
            assert {port for _, port in allowed_ingress(overlay, workload)} <= names


def test_disruption_budgets_select_the_workloads() -> None:
    for budget in kinds("default", "PodDisruptionBudget"):
        (workload,) = selected("default", "agentmeter", budget["spec"]["selector"]["matchLabels"])
        if budget["spec"].get("minAvailable") is not None:
            assert budget["spec"]["minAvailable"] < workload["spec"]["replicas"]  # a drain can proceed
        else:
            assert budget["spec"]["maxUnavailable"] == 1


def test_service_monitors_scrape_existing_ports() -> None:
    for monitor in kinds("gpu", "ServiceMonitor"):
        services = [
            s
            for s in kinds("gpu", "Service")
            if s["metadata"]["namespace"] == monitor["metadata"]["namespace"]
            and monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
        ]
        assert len(services) == 1, monitor["metadata"]["name"]  # each pod scraped once
        for endpoint in monitor["spec"]["endpoints"]:
            assert all(endpoint["port"] in {p["name"] for p in s["spec"]["ports"]} for s in services)


def test_alerts_use_metrics_the_receiver_exports() -> None:
    telemetry = Telemetry()
    telemetry.requests.labels("grpc", "traces", "ok").inc()
    telemetry.watch_pipeline(lambda: PipelineSnapshot(PipelineStats(), 0, 0, WriterSnapshot("spans"), 0))
    telemetry.watch_gpu_metrics(lambda: GpuMetricsSnapshot(0, WriterSnapshot("gpu_metrics")))
    text, _ = telemetry.render()
    exported = {re.split(r"[{ ]", line)[0] for line in text.decode().splitlines() if not line.startswith("#")}
    # the live cost metrics (families without samples until a call is counted)
    meter = CostMeter(LivePrices())
    exported |= {f.name + ("_total" if f.type == "counter" else "") for f in meter.families()}
    used = {
        m
        for rule in kinds("default", "PrometheusRule")
        for group in rule["spec"]["groups"]
        for r in group["rules"]
        for m in re.findall(r"agentmeter_\w+", r["expr"])
    }
    assert "agentmeter_genai_cost_usd_total" in used
    assert used and used <= exported, used - exported
