"""NVIDIA dcgm-exporter's labelling, emulated: which rows one scrape of a GPU node gives, with which labels.

dcgm-exporter cannot run here (no GPU, no DCGM), so the demo, the synthetic datasets and the tests build
their DCGM rows with this module, which follows dcgm-exporter's source as read at commit d5e5f51
(github.com/NVIDIA/dcgm-exporter). The rules, each from the file named:

- One row per DCGM entity and metric: every GPU, and every MIG GPU instance, whose `gpu` and UUID label are
  its parent GPU's, plus `GPU_I_PROFILE` and `GPU_I_ID`; `hostname` (renamed from `Hostname` at d5e5f51),
  `device` ("nvidia<minor>"), `modelName` (internal/pkg/rendermetrics/render_metrics.go). With
  `--use-old-namespace` the UUID label is `uuid` (internal/pkg/collector/gpu_collector.go) and the pod
  labels are `pod_name`, `pod_namespace`, `container_name` (internal/pkg/transformation/const.go).
- `--kubernetes`, device plugins (internal/pkg/transformation/kubernetes.go `toDeviceToPod`): only
  `nvidia.com/gpu` and `nvidia.com/mig-*` resources (appconfig/const.go); a device id `MIG-<uuid>` maps the
  pod to the MIG row keyed `<gpu>-<GPU_I_ID>` (deviceinfo/device_info.go `GetGPUInstanceIdentifier`), any
  other id to the whole-GPU row whose UUID it is (`--kubernetes-gpu-id-type uid`, the default). One pod per
  key: the last one listed wins. The row itself gets `pod`, `namespace`, `container`.
- `--kubernetes-enable-dra` (`toDeviceToPodsDRA`): only claims of driver `gpu.nvidia.com`
  (transformation/const.go `DRAGPUDriverName`); a MIG device is keyed by its **parent** GPU's UUID, a whole
  GPU by its own UUID (transformation/dra.go `GetDeviceInfo`), one entry per pod/namespace/container and
  key. `Process` then looks each row up by `GetIDOfType` (internal/pkg/collector/types.go): a MIG row by
  `<gpu>-<GPU_I_ID>`, which never matches a UUID, so **MIG rows never carry `dra_*` labels**; a whole-GPU
  row is **replaced by one copy per entry** under its UUID, each with that entry's pod labels and
  `dra_claim_name`, `dra_claim_namespace`, `dra_driver_name`, `dra_pool_name`, `dra_device_name`, plus
  `dra_mig_profile` and `dra_mig_device_uuid` when the claimed device is a MIG device of that GPU. So the
  parent GPU's activity appears once per MIG claim on it, labelled with that claim.

DRA device names follow NVIDIA's DRA driver (NVIDIA/k8s-dra-driver-gpu cmd/gpu-kubelet-plugin): a whole GPU
is `gpu-<minor>` (deviceinfo.go), a MIG device `gpu-<minor>-mig-<profile without dots>-<profile id>-
<placement start>` (mig.go `ToCanonicalName`); its pool is the node. That driver says itself that nothing
ties a MIG device's name (profile + placement) to its GPU instance id (mig.go, `MigLiveTuple`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

NVIDIA_GPU_DRIVER = "gpu.nvidia.com"
NVIDIA_GPU_RESOURCE = "nvidia.com/gpu"
NVIDIA_MIG_RESOURCE_PREFIX = "nvidia.com/mig-"
MIG_UUID_PREFIX = "MIG-"


@dataclass(frozen=True)
class MigInstance:
    """A MIG GPU instance as DCGM sees it (GPU_I_ID) and as NVIDIA's DRA driver names it."""

    gpu_instance_id: int
    profile: str  # "1g.10gb"
    profile_id: int  # NVML's GPU instance profile id (19 for 1g.10gb on an A100/H100 80GB)
    placement_start: int
    uuid: str  # "MIG-..."


@dataclass(frozen=True)
class Gpu:
    minor: int  # the `gpu` label and nvidia<minor>
    uuid: str  # "GPU-..."
    model: str = "NVIDIA A100-SXM4-80GB"
    mig: tuple[MigInstance, ...] = ()

    def dra_device(self) -> str:
        return f"gpu-{self.minor}"

    def mig_dra_device(self, instance: MigInstance) -> str:
        return (
            f"gpu-{self.minor}-mig-{instance.profile.replace('.', '')}-{instance.profile_id}-{instance.placement_start}"
        )


@dataclass(frozen=True)
class Holder:
    """A container holding a device, as the kubelet's PodResources API lists it: a DRA claim's device
    (`driver`, `pool`, `device`) or a device-plugin device id (`resource_name`, `device_id`)."""

    namespace: str
    pod: str
    container: str
    claim_name: str | None = None
    claim_namespace: str | None = None
    driver: str | None = None
    pool: str | None = None
    device: str | None = None
    resource_name: str | None = None
    device_id: str | None = None


@dataclass(frozen=True)
class ExporterConfig:
    kubernetes: bool = True  # --kubernetes
    enable_dra: bool = True  # --kubernetes-enable-dra (off by default upstream)
    use_old_namespace: bool = False  # --use-old-namespace


@dataclass(frozen=True)
class Entity:
    """What a row measures: a whole GPU (gpu_instance_id None) or one of its MIG instances."""

    gpu_uuid: str
    gpu_instance_id: int | None = None


@dataclass
class Row:
    entity: Entity
    labels: dict[str, str] = field(default_factory=dict)


def scrape(hostname: str, gpus: Sequence[Gpu], holders: Sequence[Holder], config: ExporterConfig) -> list[Row]:
    """The labelled rows of one metric in one scrape of a node: `holders` are the pods holding devices now."""
    rows = _entity_rows(hostname, gpus, config)
    if not config.kubernetes:
        return rows
    _label_device_plugin_pods(rows, gpus, holders, config)
    if config.enable_dra:
        rows = _expand_dra_claims(rows, gpus, holders, config)
    return rows


def _entity_rows(hostname: str, gpus: Sequence[Gpu], config: ExporterConfig) -> list[Row]:
    uuid_label = "uuid" if config.use_old_namespace else "UUID"
    rows = []
    for gpu in gpus:
        base = {
            "gpu": str(gpu.minor),
            uuid_label: gpu.uuid,
            "device": f"nvidia{gpu.minor}",
            "modelName": gpu.model,
            "hostname": hostname,
        }
        rows.append(Row(Entity(gpu.uuid), dict(base)))
        for instance in gpu.mig:
            labels = {**base, "GPU_I_PROFILE": instance.profile, "GPU_I_ID": str(instance.gpu_instance_id)}
            rows.append(Row(Entity(gpu.uuid, instance.gpu_instance_id), labels))
    return rows


def _pod_labels(holder: Holder, config: ExporterConfig) -> dict[str, str]:
    if config.use_old_namespace:
        return {"pod_name": holder.pod, "pod_namespace": holder.namespace, "container_name": holder.container}
    return {"pod": holder.pod, "namespace": holder.namespace, "container": holder.container}


def _row_key(row: Row, gpus: Sequence[Gpu]) -> str:
    """collector/types.go GetIDOfType: `<gpu>-<GPU_I_ID>` for a MIG row, else the GPU's UUID."""
    if row.entity.gpu_instance_id is None:
        return row.entity.gpu_uuid
    (gpu,) = [g for g in gpus if g.uuid == row.entity.gpu_uuid]
    return f"{gpu.minor}-{row.entity.gpu_instance_id}"


def _label_device_plugin_pods(rows: list[Row], gpus: Sequence[Gpu], holders: Sequence[Holder], config) -> None:
    by_key: dict[str, Holder] = {}
    for holder in holders:
        resource = holder.resource_name
        if resource is None or holder.device_id is None:
            continue
        if resource != NVIDIA_GPU_RESOURCE and not resource.startswith(NVIDIA_MIG_RESOURCE_PREFIX):
            continue  # "Skipping non-NVIDIA resource"
        if holder.device_id.startswith(MIG_UUID_PREFIX):
            for gpu in gpus:
                for instance in gpu.mig:
                    if instance.uuid == holder.device_id:  # NVML GetMIGDeviceInfoByID -> parent + GI
                        by_key[f"{gpu.minor}-{instance.gpu_instance_id}"] = holder
        by_key[holder.device_id] = holder
    for row in rows:
        held_by = by_key.get(_row_key(row, gpus))
        if held_by is not None:
            row.labels.update(_pod_labels(held_by, config))


def _expand_dra_claims(rows: list[Row], gpus: Sequence[Gpu], holders: Sequence[Holder], config) -> list[Row]:
    entries: dict[str, list[tuple[Holder, MigInstance | None]]] = {}
    seen: set[tuple[str, str, str, str]] = set()
    for holder in holders:
        if holder.driver != NVIDIA_GPU_DRIVER or holder.device is None:
            continue
        found = _resolve_dra_device(gpus, holder.device)
        if found is None:
            continue  # "No UUID for pool/device"
        key, instance = found
        if (key, holder.pod, holder.namespace, holder.container) in seen:
            continue  # one entry per pod + namespace + container and key
        seen.add((key, holder.pod, holder.namespace, holder.container))
        entries.setdefault(key, []).append((holder, instance))
    expanded = []
    for row in rows:
        claimed = entries.get(_row_key(row, gpus))
        if not claimed:
            expanded.append(row)
            continue
        for holder, instance in claimed:
            labels = {
                **row.labels,
                **_pod_labels(holder, config),
                "dra_claim_name": holder.claim_name or "",
                "dra_claim_namespace": holder.claim_namespace or holder.namespace,
                "dra_driver_name": holder.driver or "",
                "dra_pool_name": holder.pool or "",
                "dra_device_name": holder.device or "",
            }
            if instance is not None:
                labels["dra_mig_profile"] = instance.profile
                labels["dra_mig_device_uuid"] = instance.uuid
            expanded.append(Row(row.entity, labels))
    return expanded


def _resolve_dra_device(gpus: Sequence[Gpu], device: str) -> tuple[str, MigInstance | None] | None:
    """dra.go GetDeviceInfo: a MIG device -> (parent UUID, its MIG info); a whole GPU -> (its UUID, None)."""
    for gpu in gpus:
        if device == gpu.dra_device():
            return gpu.uuid, None
        for instance in gpu.mig:
            if device == gpu.mig_dra_device(instance):
                return gpu.uuid, instance
    return None


def otlp_request(
    metric: str, samples: Iterable[tuple[int, Row, float]], *, target: str = "dcgm-exporter:9400"
) -> ExportMetricsServiceRequest:
    """(time ns, row, value) samples of one gauge as the Collector's prometheus receiver forwards a scrape: the
    labels become data point attributes (honor_labels keeps them as the exporter wrote them), the scrape job
    and target the resource (`service.name`, `service.instance.id`)."""
    gauge = metrics_pb2.Gauge()
    for time_ns, row, value in samples:
        attributes = [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in sorted(row.labels.items())]
        gauge.data_points.add(time_unix_nano=time_ns, as_double=value, attributes=attributes)
    resource = [
        KeyValue(key="service.name", value=AnyValue(string_value="dcgm-exporter")),
        KeyValue(key="service.instance.id", value=AnyValue(string_value=target)),
    ]
    return ExportMetricsServiceRequest(
        resource_metrics=[
            metrics_pb2.ResourceMetrics(
                resource=Resource(attributes=resource),
                scope_metrics=[metrics_pb2.ScopeMetrics(metrics=[metrics_pb2.Metric(name=metric, gauge=gauge)])],
            )
        ]
    )
