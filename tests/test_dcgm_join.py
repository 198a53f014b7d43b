"""DCGM rows joined to GPU slices the way dcgm-exporter really labels them (issue 12, findings 6 and 7).

The rows come from collector_ext/demo/dcgm_exporter.py (dcgm-exporter's labelling at its commit d5e5f51,
each rule naming its upstream file), go through the Collector's prometheus receiver shape (OTLP gauges)
into the real GPU metrics receiver and its Parquet, and `analyze gpu` reads them. One hour, a scrape every
60 s, on two nodes:

node-1 (dcgm-exporter with --kubernetes --kubernetes-enable-dra):
- GPU-aaaa (gpu 0) reads 0.9, MIG instances GI 1 (1g.10gb) 0.25 and GI 2 (3g.40gb) 0.5, claimed through DRA
  by agents/vllm-a and agents/vllm-b: each slice is its MIG row's activity (900 s and 1800 s busy), and the
  parent's 0.9, which dcgm-exporter repeats once per claim with the claim's labels, is credited to neither.
- GPU-bbbb (gpu 1) reads 0.4, a whole GPU claimed by team-b/shared-1 all hour and team-b/shared-2 for the
  second half (its row is copied per claim): the slice is busy 1440 s, once.
- GPU-cccc (gpu 2) reads 0.8, two 1g.10gb instances (GI 3: 0.1, GI 4: 0.6) claimed by agents/x and agents/y:
  nothing ties a DRA MIG device to its GPU instance, so both slices fall back to their spans (none: 0 busy),
  and never take the parent's 0.8.
- agents/imex holds a compute-domain.nvidia.com channel: no GPU, no row, no slice.
node-2 (dcgm-exporter with --kubernetes --use-old-namespace, device plugins):
- GPU-dddd (gpu 0) reads 0.7, its MIG instance GI 5 (1g.10gb, MIG-dddd-5) 0.3 is held by batch/trainer
  through nvidia.com/mig-1g.10gb: the row's `pod_name`/`pod_namespace` labels tie it, 1080 s busy.
- GPU-eeee (gpu 1) reads 0.2 (GPU_UTIL 20 %), a whole GPU held by batch/render through nvidia.com/gpu: the
  row whose UUID is the device id, 720 s busy.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from analyzer.dataset import open_dataset
from analyzer.gpu import gpu_report
from collector_ext.config import ReceiverConfig
from collector_ext.demo.dcgm_exporter import (
    Entity,
    ExporterConfig,
    Gpu,
    Holder,
    MigInstance,
    otlp_request,
    scrape,
)
from collector_ext.gpu.metrics import GpuMetricsReceiver
from collector_ext.schema import GPU_ALLOCATIONS
from collector_ext.storage.dataset_files import DatasetFiles

T0 = int(datetime(2026, 11, 2, tzinfo=UTC).timestamp())
NS = 1_000_000_000
HOUR = 3600
DRA, IMEX = "gpu.nvidia.com", "compute-domain.nvidia.com"

GPU_A = Gpu(
    0,
    "GPU-aaaa",
    mig=(MigInstance(1, "1g.10gb", 19, 0, "MIG-aaaa-1"), MigInstance(2, "3g.40gb", 9, 4, "MIG-aaaa-2")),
)
GPU_B = Gpu(1, "GPU-bbbb")
GPU_C = Gpu(
    2,
    "GPU-cccc",
    mig=(MigInstance(3, "1g.10gb", 19, 0, "MIG-cccc-3"), MigInstance(4, "1g.10gb", 19, 1, "MIG-cccc-4")),
)
GPU_D = Gpu(0, "GPU-dddd", mig=(MigInstance(5, "1g.10gb", 19, 0, "MIG-dddd-5"),))
GPU_E = Gpu(1, "GPU-eeee")
ACTIVITY = {  # GR_ENGINE_ACTIVE of each DCGM entity
    Entity("GPU-aaaa"): 0.9,
    Entity("GPU-aaaa", 1): 0.25,
    Entity("GPU-aaaa", 2): 0.5,
    Entity("GPU-bbbb"): 0.4,
    Entity("GPU-cccc"): 0.8,
    Entity("GPU-cccc", 3): 0.1,
    Entity("GPU-cccc", 4): 0.6,
    Entity("GPU-dddd"): 0.7,
    Entity("GPU-dddd", 5): 0.3,
}
GPU_UTIL = {Entity("GPU-eeee"): 20.0}  # a whole GPU exporting only DCGM_FI_DEV_GPU_UTIL


def claim(namespace, pod, name, device, driver=DRA, container="server") -> tuple[Holder, float, float]:
    holder = Holder(namespace, pod, container, name, namespace, driver, "node-1", device)
    return holder, 0, HOUR


NODE_1 = [
    claim("agents", "vllm-a", "a-gpu", GPU_A.mig_dra_device(GPU_A.mig[0])),
    claim("agents", "vllm-b", "b-gpu", GPU_A.mig_dra_device(GPU_A.mig[1])),
    claim("team-b", "shared-1", "d1", GPU_B.dra_device(), container="app"),
    (Holder("team-b", "shared-2", "app", "d2", "team-b", DRA, "node-1", GPU_B.dra_device()), HOUR / 2, HOUR),
    claim("agents", "x", "x-gpu", GPU_C.mig_dra_device(GPU_C.mig[0])),
    claim("agents", "y", "y-gpu", GPU_C.mig_dra_device(GPU_C.mig[1])),
    claim("agents", "imex", "imex-channel", "channel-0", driver=IMEX),
]
NODE_2 = [
    (Holder("batch", "trainer", "main", resource_name="nvidia.com/mig-1g.10gb", device_id="MIG-dddd-5"), 0, HOUR),
    (Holder("batch", "render", "main", resource_name="nvidia.com/gpu", device_id="GPU-eeee"), 0, HOUR),
]

SLICE_A1 = "node-1/gpu.nvidia.com/node-1/gpu-0-mig-1g10gb-19-0"
SLICE_A2 = "node-1/gpu.nvidia.com/node-1/gpu-0-mig-3g40gb-9-4"
SLICE_B = "node-1/gpu.nvidia.com/node-1/gpu-1"
SLICE_CX = "node-1/gpu.nvidia.com/node-1/gpu-2-mig-1g10gb-19-0"
SLICE_CY = "node-1/gpu.nvidia.com/node-1/gpu-2-mig-1g10gb-19-1"
SLICE_D = "node-2/nvidia.com/mig-1g.10gb/MIG-dddd-5"
SLICE_E = "node-2/nvidia.com/gpu/GPU-eeee"


def allocation_rows(node: str, holders, gpu_drivers=frozenset({DRA})) -> list[dict]:
    """What the PodResources poller writes for these holdings (only GPU drivers' claims)."""
    rows = []
    for holder, first, last in holders:
        if holder.driver is not None and holder.driver not in gpu_drivers:
            continue
        rows.append(
            {
                "node": node,
                "namespace": holder.namespace,
                "pod": holder.pod,
                "container": holder.container,
                "source": "dra" if holder.driver else "device_plugin",
                "claim_name": holder.claim_name,
                "claim_namespace": holder.claim_namespace,
                "driver": holder.driver,
                "pool": holder.pool,
                "device": holder.device,
                "cdi_devices": [f"k8s.{holder.driver}/claim={holder.claim_name}-{holder.device}"]
                if holder.driver
                else None,
                "share_id": None,
                "resource_name": holder.resource_name,
                "device_ids": [holder.device_id] if holder.device_id else None,
                "first_seen": (T0 + int(first)) * NS,
                "last_seen": (T0 + int(last)) * NS,
            }
        )
    return rows


def scrapes(node: str, gpus, holders, config: ExporterConfig, activity: dict, metric: str):
    samples = []
    for t in range(0, HOUR, 60):
        now = [holder for holder, first, last in holders if first <= t < last]
        for row in scrape(node, gpus, now, config):
            if row.entity in activity:
                samples.append(((T0 + t) * NS, row, activity[row.entity]))
    return otlp_request(metric, samples)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dcgm") / "dataset"
    config = ReceiverConfig(data_dir=root, writer_id="w1", wal_dir=root.parent / "wal", fsync="never")
    files = DatasetFiles(root, "w1")
    receiver = GpuMetricsReceiver(config, files)
    node_1 = ExporterConfig(enable_dra=True)
    node_2 = ExporterConfig(enable_dra=False, use_old_namespace=True)
    active = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"
    for request in (
        scrapes("node-1", [GPU_A, GPU_B, GPU_C], NODE_1, node_1, ACTIVITY, active),
        scrapes("node-2", [GPU_D, GPU_E], NODE_2, node_2, ACTIVITY, active),
        scrapes("node-2", [GPU_D, GPU_E], NODE_2, node_2, GPU_UTIL, "DCGM_FI_DEV_GPU_UTIL"),
    ):
        assert receiver.export(request) == (0, "")
    receiver.close()
    rows = allocation_rows("node-1", NODE_1) + allocation_rows("node-2", NODE_2)
    files.write("gpu_allocations", pa.Table.from_pylist(rows, schema=GPU_ALLOCATIONS))
    return root


def by_slice(root: Path) -> dict[str, tuple]:
    return {
        row["slice"]: (round(row["allocated_slice_hours"] * 3600), round(row["busy_slice_hours"] * 3600),
                       row["profile"], row["activity_source"])
        for row in gpu_report(open_dataset(root).con, "slice")
    }  # fmt: skip


def test_the_emulated_exporter_labels_mig_rows_without_claims_and_copies_the_parent_per_claim() -> None:
    now = [holder for holder, first, _ in NODE_1 if first == 0]
    rows = scrape("node-1", [GPU_A], now, ExporterConfig())
    mig = [r.labels for r in rows if r.entity.gpu_instance_id is not None]
    assert [sorted(labels) for labels in mig] == [
        ["GPU_I_ID", "GPU_I_PROFILE", "UUID", "device", "gpu", "hostname", "modelName"]
    ] * 2
    parent = [r.labels for r in rows if r.entity == Entity("GPU-aaaa")]
    assert [(p["pod"], p["dra_device_name"], p["dra_mig_profile"], p["dra_mig_device_uuid"]) for p in parent] == [
        ("vllm-a", "gpu-0-mig-1g10gb-19-0", "1g.10gb", "MIG-aaaa-1"),
        ("vllm-b", "gpu-0-mig-3g40gb-9-4", "3g.40gb", "MIG-aaaa-2"),
    ]


def test_mig_claims_get_their_mig_rows_and_never_the_parent_gpu(dataset: Path) -> None:
    slices = by_slice(dataset)
    assert slices[SLICE_A1] == (3600, 900, "1g.10gb", "dcgm")
    assert slices[SLICE_A2] == (3600, 1800, "3g.40gb", "dcgm")


def test_a_whole_gpu_row_copied_per_claim_is_credited_once(dataset: Path) -> None:
    assert by_slice(dataset)[SLICE_B] == (3600, 1440, "gpu", "dcgm")
    pods = {row["pod"]: round(row["busy_slice_hours"] * 3600) for row in gpu_report(open_dataset(dataset).con, "pod")}
    assert (pods["team-b/shared-1"], pods["team-b/shared-2"]) == (720 + 360, 360)


def test_mig_instances_nothing_ties_to_their_claims_fall_back_to_spans(dataset: Path) -> None:
    slices = by_slice(dataset)
    assert slices[SLICE_CX] == (3600, 0, "1g.10gb", "spans")
    assert slices[SLICE_CY] == (3600, 0, "1g.10gb", "spans")


def test_device_plugins_and_old_namespace_labels(dataset: Path) -> None:
    slices = by_slice(dataset)
    assert slices[SLICE_D] == (3600, 1080, "1g.10gb", "dcgm")
    assert slices[SLICE_E] == (3600, 720, "gpu", "dcgm_gpu_util")


def test_only_gpu_claims_are_slices(dataset: Path) -> None:
    assert set(by_slice(dataset)) == {SLICE_A1, SLICE_A2, SLICE_B, SLICE_CX, SLICE_CY, SLICE_D, SLICE_E}
