"""Synthetic GPU datasets: DRA slice allocations, DCGM samples and the inference spans on those pods.

    from analyzer.gpu_synthetic import synthetic_gpu
    synthetic_gpu(Path("data"), slices=8, days=2, seed=7)                       # notebook / tests
    synthetic_gpu(Path("big"), slices=200, days=30, spans=5_000_000, seed=1)    # the benchmark

Each slice is a MIG instance of its own GPU claimed through DRA (or, every 6th, a whole GPU through the
device plugin) held by one agent pod, which restarts once a day (a 10-minute gap in the allocation). Slices
are busy in bursts (a few a day) and idle otherwise, the story of issue 5: GR_ENGINE_ACTIVE samples every
`sample_seconds` read a busy fraction in a burst and 0 outside. Every 5th slice has no metrics (its
activity comes from spans). The DCGM rows are labelled as dcgm-exporter (--kubernetes
--kubernetes-enable-dra) labels them (collector_ext/demo/dcgm_exporter.py): a DRA MIG slice's MIG row has
no pod or claim label, and its parent GPU's row, copied for the claim while it is held, carries them and
reads the instance's share of the GPU; a device-plugin GPU's row carries its pod. (Labels the analyzer does
not read, such as modelName, are left out.) Inference spans (agent, task) fall inside the bursts on the
slice's pod; `spans` sets their total. Rows are written as the receiver would (DatasetFiles, the schema's
tables), one day at a time to bound memory. Deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from collector_ext.demo.dcgm_exporter import ExporterConfig, Gpu, Holder, MigInstance, scrape
from collector_ext.schema import GPU_ALLOCATIONS, GPU_METRICS, SPANS
from collector_ext.storage.dataset_files import DatasetFiles

DEFAULT_START = datetime(2026, 11, 2, tzinfo=UTC)
PROFILES = ("1g.10gb", "2g.20gb", "3g.40gb", "1g.10gb", "7g.80gb")
# NVML GPU instance profile ids and compute slices of those profiles on an 80 GB A100 / H100
PROFILE_IDS = {"1g.10gb": 19, "2g.20gb": 14, "3g.40gb": 9, "7g.80gb": 0}
GPCS = {"1g.10gb": 1, "2g.20gb": 2, "3g.40gb": 3, "7g.80gb": 7}
GPUS_PER_NODE = 7
NAMESPACES = ("team-search", "team-support", "team-data")
AGENTS = ("coder", "researcher", "reviewer", "summarizer", "triage", "planner")
DAY = 86_400
RESTART_GAP = 600
BURSTS_PER_DAY = 6


@dataclass
class GpuSummary:
    slices: int
    allocations: int
    samples: int
    spans: int


def slice_layout(slices: int) -> list[dict]:
    layout = []
    for i in range(slices):
        plugin = i % 6 == 5
        profile = "gpu" if plugin else PROFILES[i % len(PROFILES)]
        node = f"gpu-node-{i // GPUS_PER_NODE}"
        instance = None if plugin else MigInstance(i % 7 + 1, profile, PROFILE_IDS[profile], 0, f"MIG-{i:04d}")
        gpu = Gpu(i % GPUS_PER_NODE, f"GPU-{i:04d}", mig=(instance,) if instance else ())
        namespace, pod = NAMESPACES[i % len(NAMESPACES)], f"vllm-{i}"
        if plugin:
            holder = Holder(namespace, pod, "server", resource_name="nvidia.com/gpu", device_id=gpu.uuid)
        else:
            assert instance is not None  # a DRA slice is a MIG instance here
            device = gpu.mig_dra_device(instance)
            holder = Holder(namespace, pod, "server", f"{pod}-gpu", namespace, "gpu.nvidia.com", node, device)
        layout.append(
            {
                "node": node,
                "namespace": namespace,
                "pod": pod,
                "profile": profile,
                "plugin": plugin,
                "device": holder.device,
                "gpu_id": gpu.uuid,
                "metrics": i % 5 != 4,
                "holder": holder,
                "gpu": gpu,
            }
        )
    return layout


def _dcgm_rows(slot: dict) -> tuple[dict[str, str], dict[str, str] | None, dict[str, str] | None]:
    """The slice's own row's labels while held, and for a DRA MIG slice its parent GPU's row while the claim is
    held (a copy with the claim's labels) and while it is not (the plain row)."""
    gpu, holder = slot["gpu"], slot["holder"]
    held = scrape(slot["node"], [gpu], [holder], ExporterConfig())
    own = next(r.labels for r in held if r.entity.gpu_instance_id is not None or slot["plugin"])
    if slot["plugin"]:
        return own, None, None
    parent_held = next(r.labels for r in held if r.entity.gpu_instance_id is None)
    parent_free = next(
        r.labels for r in scrape(slot["node"], [gpu], [], ExporterConfig()) if r.entity.gpu_instance_id is None
    )
    return own, parent_held, parent_free


def _column(values, dtype: pa.DataType) -> pa.Array:
    return pa.array(values, type=dtype)


def _table(schema: pa.Schema, columns: dict[str, pa.Array], n: int) -> pa.Table:
    return pa.table({f.name: columns.get(f.name, pa.nulls(n, f.type)) for f in schema}, schema=schema)


# gpu_metrics columns <- dcgm-exporter label names (collector_ext/gpu/metrics.py LABEL_COLUMNS, first names)
METRIC_LABELS = {
    "gpu": "gpu", "uuid": "UUID", "gpu_i_id": "GPU_I_ID", "gpu_i_profile": "GPU_I_PROFILE",
    "hostname": "hostname", "pod": "pod", "namespace": "namespace", "container": "container",
    "dra_claim_name": "dra_claim_name", "dra_claim_namespace": "dra_claim_namespace",
    "dra_driver_name": "dra_driver_name", "dra_pool_name": "dra_pool_name", "dra_device_name": "dra_device_name",
    "dra_mig_profile": "dra_mig_profile",
}  # fmt: skip


def _metric_rows(steps: np.ndarray, values: np.ndarray, labels: dict[str, str]) -> pa.Table:
    """GR_ENGINE_ACTIVE samples of one labelled row, as the receiver stores them."""
    n = len(steps)
    columns = {
        "time": _column(steps * 10**9, pa.int64()).cast(pa.timestamp("ns", "UTC")),
        "metric": pa.array(["DCGM_FI_PROF_GR_ENGINE_ACTIVE"] * n, pa.string()),
        "value": _column(values, pa.float64()),
    }
    for column, label in METRIC_LABELS.items():
        if label in labels:
            columns[column] = pa.array([labels[label]] * n, pa.string())
    return _table(GPU_METRICS, columns, n)


def synthetic_gpu(
    root: Path,
    *,
    slices: int = 8,
    days: int = 2,
    sample_seconds: int = 60,
    spans: int = 2_000,
    seed: int = 1,
    start: datetime = DEFAULT_START,
    writer_id: str = "synthetic-gpu",
) -> GpuSummary:
    if slices < 1 or days < 1 or sample_seconds < 1 or spans < 0:
        raise ValueError("slices >= 1, days >= 1, sample_seconds >= 1 and spans >= 0 are required")
    rng = np.random.default_rng(seed)
    files = DatasetFiles(Path(root), writer_id)
    layout = slice_layout(slices)
    t0 = int(start.timestamp())
    spans_per_burst = spans / (slices * days * BURSTS_PER_DAY)
    summary = GpuSummary(slices=slices, allocations=0, samples=0, spans=0)
    carry = 0.0
    for day in range(days):
        day_start = t0 + day * DAY
        restart = day_start + rng.integers(3600, DAY - 3600, slices)
        # allocations: [day start, restart) and [restart + gap, day end], as the poller closes them
        allocation_rows = []
        for i, s in enumerate(layout):
            for first, last in ((day_start, restart[i]), (restart[i] + RESTART_GAP, day_start + DAY - 1)):
                allocation_rows.append(
                    {
                        "node": s["node"],
                        "namespace": s["namespace"],
                        "pod": s["pod"],
                        "container": "server",
                        "source": "device_plugin" if s["plugin"] else "dra",
                        "claim_name": None if s["plugin"] else f"{s['pod']}-gpu",
                        "claim_namespace": None if s["plugin"] else s["namespace"],
                        "driver": None if s["plugin"] else "gpu.nvidia.com",
                        "pool": None if s["plugin"] else s["node"],
                        "device": s["device"],
                        "cdi_devices": None if s["plugin"] else [f"k8s.gpu.nvidia.com/claim={s['pod']}-gpu"],
                        "share_id": None,
                        "resource_name": "nvidia.com/gpu" if s["plugin"] else None,
                        "device_ids": [s["gpu_id"]] if s["plugin"] else None,
                        "first_seen": int(first) * 10**9,
                        "last_seen": int(last) * 10**9,
                    }
                )
        files.write("gpu_allocations", pa.Table.from_pylist(allocation_rows, schema=GPU_ALLOCATIONS))
        summary.allocations += len(allocation_rows)

        # bursts: BURSTS_PER_DAY per slice, 5-40 minutes, busy fraction 0.3-0.95
        burst_start = day_start + rng.integers(0, DAY - 2400, (slices, BURSTS_PER_DAY))
        burst_length = rng.integers(300, 2400, (slices, BURSTS_PER_DAY))
        burst_level = rng.uniform(0.3, 0.95, (slices, BURSTS_PER_DAY))
        steps = np.arange(day_start, day_start + DAY, sample_seconds)
        with_metrics = [i for i, s in enumerate(layout) if s["metrics"]]
        if with_metrics:
            idx = np.array(with_metrics)
            inside = (steps[None, None, :] >= burst_start[idx, :, None]) & (
                steps[None, None, :] < (burst_start + burst_length)[idx, :, None]
            )
            values = (inside * burst_level[idx, :, None]).max(axis=1)  # (slices with metrics, steps)
            held = (steps[None, :] < restart[idx, None]) | (steps[None, :] >= restart[idx, None] + RESTART_GAP)
            chunks: list[pa.Table] = []
            for k, i in enumerate(with_metrics):
                own, parent_held, parent_free = _dcgm_rows(layout[i])
                chunks.append(_metric_rows(steps, values[k], own))
                if parent_held is not None and parent_free is not None:  # the parent GPU: this instance's share
                    share = values[k] * GPCS[layout[i]["profile"]] / 7
                    chunks.append(_metric_rows(steps[held[k]], share[held[k]], parent_held))
                    chunks.append(_metric_rows(steps[~held[k]], share[~held[k]], parent_free))
            table = pa.concat_tables(chunks)
            files.write("gpu_metrics", table)
            summary.samples += table.num_rows

        # inference spans inside the bursts on the slice's pod
        carry += spans_per_burst * slices * BURSTS_PER_DAY
        count = int(carry) if day < days - 1 else spans - summary.spans
        carry -= count
        if count > 0:
            which = rng.integers(0, slices * BURSTS_PER_DAY, count)
            slice_of = which // BURSTS_PER_DAY
            b_start = burst_start.reshape(-1)[which]
            b_len = burst_length.reshape(-1)[which]
            begin_ms = (b_start * 1000 + rng.integers(0, b_len * 1000)).astype(np.int64)
            length_ms = rng.integers(2_000, 20_000, count)
            trace_ids = rng.integers(0, 256, (count, 16), dtype=np.uint8)
            span_ids = rng.integers(0, 256, (count, 8), dtype=np.uint8)
            agents = np.array(AGENTS, dtype=object)[rng.integers(0, len(AGENTS), count)]
            trace_col = pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), count, [None, pa.py_buffer(trace_ids)])
            columns = {
                "trace_id": trace_col,
                "span_id": pa.FixedSizeBinaryArray.from_buffers(pa.binary(8), count, [None, pa.py_buffer(span_ids)]),
                "name": _column(["chat acme-coder-13b"] * count, pa.string()),
                "span_kind": _column(["client"] * count, pa.string()),
                "start_time": _column(begin_ms * 10**6, pa.int64()).cast(pa.timestamp("ns", "UTC")),
                "end_time": _column((begin_ms + length_ms) * 10**6, pa.int64()).cast(pa.timestamp("ns", "UTC")),
                "service_name": _column([f"{a}-svc" for a in agents], pa.string()),
                "k8s_namespace": _column([layout[i]["namespace"] for i in slice_of], pa.string()),
                "k8s_pod": _column([layout[i]["pod"] for i in slice_of], pa.string()),
                "category": _column(["llm"] * count, pa.string()),
                "operation": _column(["chat"] * count, pa.string()),
                "provider": _column(["vllm"] * count, pa.string()),
                "request_model": _column(["acme-coder-13b"] * count, pa.string()),
                "input_tokens": _column(rng.integers(100, 4000, count), pa.int64()),
                "output_tokens": _column(rng.integers(10, 800, count), pa.int64()),
                "usage_counted": _column(np.ones(count, dtype=bool), pa.bool_()),
                "agent_name": _column(agents.tolist(), pa.string()),
                "task_id": trace_col,
                "stitch_state": _column(["ok"] * count, pa.string()),
            }
            files.write("spans", _table(SPANS, columns, count))
            summary.spans += count
    return summary
