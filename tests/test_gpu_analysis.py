"""`analyze gpu` on constructed timelines: exact slice-hours, utilization, idle hours, cost and attribution.

The timeline (seconds after T0, all on node-1):

- S1 a 1g.10gb MIG slice (DRA claim a-gpu) held by agents/vllm-a over [0, 3600], then the pod restarts and
  holds it again over [3700, 7300] (through two containers sharing the claim). As dcgm-exporter labels
  DRA MIG claims (collector_ext/demo/dcgm_exporter.py): its MIG row (GPU-aaaa, GPU_I_ID 1) carries no pod
  or claim label; the parent GPU's row is copied for the claim (dra_* + dra_mig_* labels) and reads 0.9:
  the whole GPU's activity, never the slice's. The MIG row's GR_ENGINE_ACTIVE every 60 s: 0.5 over [0, 1800), 0 until 3600; 1.0
  at 3600 and 3640 (in the gap: not allocated, not counted); 0.25 over [3700, 4300), then 0. Every sample
  of the first hour is also written twice (a WAL replay): counted once.
  busy = 30 x 60 x 0.5 + 10 x 60 x 0.25 = 1050 s of 7200 s allocated.
- S2 a whole GPU (device plugin nvidia.com/gpu GPU-9) held by batch/trainer over [0, 3600]: allocated but
  never busy (GR_ENGINE_ACTIVE 0; a GPU_UTIL of 50 % is ignored when GR_ENGINE_ACTIVE exists).
- S3 a 3g.40gb slice (DRA) held by agents/vllm-b over [0, 1800], on a GPU no exporter scrapes, so no
  metrics: busy = the union of its
  inference spans [100, 400] coder, [300, 500] writer, [1000, 1100] coder = 500 s.
- S4 a whole GPU gpu-1 shared (share ids) by team-b/shared-1 over [0, 2000] and team-b/shared-2 over
  [1000, 3000]; GR_ENGINE_ACTIVE 0.5 over [0, 3000), the GPU's row copied once per claim holding it at
  each scrape (one copy, then two, then one): each pod gets 1500 s allocated, 750 s busy.
Spans on vllm-a: coder [60, 90] and writer [60, 120] share the busy 30 s of window [60, 120) by overlap
(10 / 20); coder [3700, 3800] covers 60 + 40 s of two windows of 15 busy s each: 30; a span in the gap
[3610, 3650] gets nothing. Prices: the defaults (1g.10gb 0.57, 3g.40gb 1.71, whole GPU 4.00 per hour).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from analyzer.cli import main
from analyzer.dataset import AnalyzerError, open_dataset
from analyzer.gpu import DEFAULT_GPU_USD_PER_HOUR, DEFAULT_PROFILE_PRICES, GpuPrices, example_prices_file, gpu_report
from collector_ext.schema import GPU_ALLOCATIONS, GPU_METRICS, SPANS
from collector_ext.storage.dataset_files import DatasetFiles

T0 = datetime(2026, 11, 2, tzinfo=UTC)
NS = 1_000_000_000
S1 = "node-1/gpu.nvidia.com/node-1/gpu-0-mig-1g10gb-0"
S2 = "node-1/nvidia.com/gpu/GPU-9"
S3 = "node-1/gpu.nvidia.com/node-1/gpu-0-mig-3g40gb-1"
S4 = "node-1/gpu.nvidia.com/node-1/gpu-1"
TRACE_CODER = bytes.fromhex("c0" * 16)
TRACE_WRITER = bytes.fromhex("e0" * 16)


def ns(seconds: float) -> int:
    return int(T0.timestamp() * NS + seconds * NS)


def allocation(
    pod, namespace, first, last, *, device=None, claim=None, share=None, resource=None, ids=None, container="server"
):
    dra = device is not None
    return {
        "node": "node-1",
        "namespace": namespace,
        "pod": pod,
        "container": container,
        "source": "dra" if dra else "device_plugin",
        "claim_name": claim,
        "claim_namespace": namespace if dra else None,
        "driver": "gpu.nvidia.com" if dra else None,
        "pool": "node-1" if dra else None,
        "device": device,
        "cdi_devices": [f"cdi-{device}"] if dra else None,
        "share_id": share,
        "resource_name": resource,
        "device_ids": ids,
        "first_seen": ns(first),
        "last_seen": ns(last),
    }


def sample(t, value, metric="DCGM_FI_PROF_GR_ENGINE_ACTIVE", **labels):
    return {"time": ns(t), "metric": metric, "value": value, "labels": {}, **labels}


S1_LABELS = {"uuid": "GPU-aaaa", "gpu": "0", "gpu_i_id": "1", "gpu_i_profile": "1g.10gb", "hostname": "node-1"}
S1_PARENT_COPY = {  # GPU-aaaa's own row, copied for the MIG claim a-gpu
    "uuid": "GPU-aaaa",
    "gpu": "0",
    "hostname": "node-1",
    "pod": "vllm-a",
    "namespace": "agents",
    "container": "server",
    "dra_claim_name": "a-gpu",
    "dra_claim_namespace": "agents",
    "dra_device_name": "gpu-0-mig-1g10gb-0",
    "dra_pool_name": "node-1",
    "dra_driver_name": "gpu.nvidia.com",
    "dra_mig_profile": "1g.10gb",
    "labels": {"dra_mig_device_uuid": "MIG-aaaa-1"},
}


def s4_copy(pod: str, claim: str) -> dict:
    """GPU-bbbb's row as dcgm-exporter copies it for one claim of the whole GPU."""
    return {
        "uuid": "GPU-bbbb",
        "gpu": "1",
        "hostname": "node-1",
        "pod": pod,
        "namespace": "team-b",
        "container": "app",
        "dra_claim_name": claim,
        "dra_claim_namespace": "team-b",
        "dra_device_name": "gpu-1",
        "dra_pool_name": "node-1",
        "dra_driver_name": "gpu.nvidia.com",
    }


def span(trace_id, index, pod, start, end, agent, category="llm", namespace="agents"):
    return {
        "trace_id": trace_id,
        "span_id": trace_id[:7] + bytes([index]),
        "parent_span_id": trace_id[:7] + bytes([0]) if index else None,
        "name": f"chat {agent}" if category == "llm" else f"invoke_agent {agent}",
        "start_time": ns(start),
        "end_time": ns(end),
        "k8s_namespace": namespace,
        "k8s_pod": pod,
        "category": category,
        "agent_name": agent,
        "task_id": trace_id,
        "usage_counted": category == "llm",
        "stitch_state": "ok",
    }


def build_dataset(root: Path) -> None:
    files = DatasetFiles(root, "test")
    allocations = [
        # S1: the poller re-wrote the open interval twice (last_seen 1800, then 3600), then the restart
        allocation("vllm-a", "agents", 0, 1800, device="gpu-0-mig-1g10gb-0", claim="a-gpu"),
        allocation("vllm-a", "agents", 0, 3600, device="gpu-0-mig-1g10gb-0", claim="a-gpu"),
        allocation("vllm-a", "agents", 3700, 7300, device="gpu-0-mig-1g10gb-0", claim="a-gpu"),
        # a second container of the pod using the same claim: the slice is still held once
        allocation("vllm-a", "agents", 3700, 7300, device="gpu-0-mig-1g10gb-0", claim="a-gpu", container="sidecar"),
        allocation("trainer", "batch", 0, 3600, resource="nvidia.com/gpu", ids=["GPU-9"]),
        allocation("vllm-b", "agents", 0, 1800, device="gpu-0-mig-3g40gb-1", claim="b-gpu"),
        allocation("shared-1", "team-b", 0, 2000, device="gpu-1", claim="d1", share="s-1"),
        allocation("shared-2", "team-b", 1000, 3000, device="gpu-1", claim="d2", share="s-2"),
    ]
    files.write("gpu_allocations", pa.Table.from_pylist(allocations, schema=GPU_ALLOCATIONS))
    samples = []
    for t in range(0, 3600, 60):
        samples.append(sample(t, 0.5 if t < 1800 else 0.0, **S1_LABELS))
    samples += [sample(3600, 1.0, **S1_LABELS), sample(3640, 1.0, **S1_LABELS)]
    for t in range(3700, 7300, 60):
        samples.append(sample(t, 0.25 if t < 4300 else 0.0, **S1_LABELS))
    for t in [*range(0, 3600, 60), *range(3720, 7300, 60)]:  # scrapes while the claim is prepared
        samples.append(sample(t, 0.9, **S1_PARENT_COPY))
    trainer = {"uuid": "GPU-9", "gpu": "3", "pod": "trainer", "namespace": "batch"}
    for t in range(0, 3600, 60):
        samples.append(sample(t, 0.0, **trainer))
        samples.append(sample(t, 50.0, metric="DCGM_FI_DEV_GPU_UTIL", **trainer))
    for t in range(0, 3000, 60):
        if t < 2000:
            samples.append(sample(t, 0.5, **s4_copy("shared-1", "d1")))
        if t >= 1000:
            samples.append(sample(t, 0.5, **s4_copy("shared-2", "d2")))
    files.write("gpu_metrics", pa.Table.from_pylist(samples, schema=GPU_METRICS))
    replayed = [s for s in samples if s.get("uuid") == "GPU-aaaa" and s["time"] < ns(3600)]
    files.write("gpu_metrics", pa.Table.from_pylist(replayed, schema=GPU_METRICS))  # duplicates of a replay
    spans = [
        span(TRACE_CODER, 0, None, 0, 4000, "coder", category="agent"),
        span(TRACE_CODER, 1, "vllm-a", 60, 90, "coder"),
        span(TRACE_CODER, 2, "vllm-a", 3700, 3800, "coder"),
        span(TRACE_CODER, 3, "vllm-b", 100, 400, "coder"),
        span(TRACE_CODER, 4, "vllm-b", 1000, 1100, "coder"),
        span(TRACE_CODER, 5, "vllm-a", 3610, 3650, "coder"),  # in the restart gap
        span(TRACE_CODER, 6, "vllm-b", 120, 130, "coder", category="tool"),  # not inference
        span(TRACE_WRITER, 0, None, 0, 600, "writer", category="agent"),
        span(TRACE_WRITER, 1, "vllm-a", 60, 120, "writer"),
        span(TRACE_WRITER, 2, "vllm-b", 300, 500, "writer"),
    ]
    files.write("spans", pa.Table.from_pylist(spans, schema=SPANS))


@pytest.fixture
def dataset(data_dir: Path) -> Path:
    build_dataset(data_dir)
    return data_dir


P1, P3, PG = 0.57, 1.71, 4.00


def expected(allocated_s: float, busy_s: float, price: float) -> dict:
    return {
        "allocated_slice_hours": round(allocated_s / 3600, 6),
        "busy_slice_hours": round(busy_s / 3600, 6),
        "utilization": round(busy_s / allocated_s, 6),
        "idle_slice_hours": round((allocated_s - busy_s) / 3600, 6),
        "allocated_cost_usd": round(allocated_s * price / 3600, 6),
        "idle_cost_usd": round((allocated_s - busy_s) * price / 3600, 6),
        "busy_cost_usd": round(busy_s * price / 3600, 6),
    }


def usd(value) -> float:
    """Money is an exact DECIMAL sum (analyzer/sql/gpu_money.sql); the expectations here are to 6 places."""
    return round(float(value), 6)


def figures(row: dict) -> dict:
    return {k: usd(row[k]) if k.endswith("_usd") else row[k] for k in expected(1, 0, 0)}


def report(root: Path, by: str, **kwargs) -> dict:
    con = open_dataset(root).con
    return {row[by]: row for row in gpu_report(con, by, **kwargs)}


def test_by_slice_exact(dataset: Path) -> None:
    rows = report(dataset, "slice")
    assert set(rows) == {S1, S2, S3, S4}
    assert figures(rows[S1]) == expected(7200, 1050, P1)
    assert figures(rows[S2]) == expected(3600, 0, PG)  # allocated, never busy
    assert figures(rows[S3]) == expected(1800, 500, P3)
    assert figures(rows[S4]) == expected(3000, 1500, PG)
    assert [rows[s]["profile"] for s in (S1, S2, S3, S4)] == ["1g.10gb", "gpu", "3g.40gb", "gpu"]
    assert [rows[s]["activity_source"] for s in (S1, S2, S3, S4)] == ["dcgm", "dcgm", "spans", "dcgm"]
    assert list(rows) == [S2, S4, S1, S3]  # by cost, highest first: 4.00, 3.33, 1.14, 0.855


def test_by_pod_and_namespace_split_a_shared_device(dataset: Path) -> None:
    pods = report(dataset, "pod")
    assert figures(pods["team-b/shared-1"]) == expected(1500, 750, PG)
    assert figures(pods["team-b/shared-2"]) == expected(1500, 750, PG)
    assert figures(pods["agents/vllm-a"]) == expected(7200, 1050, P1)
    namespaces = report(dataset, "namespace")
    assert set(namespaces) == {"agents", "batch", "team-b"}
    assert namespaces["agents"]["allocated_slice_hours"] == round(9000 / 3600, 6)
    assert namespaces["agents"]["idle_slice_hours"] == round((9000 - 1550) / 3600, 6)
    assert usd(namespaces["agents"]["idle_cost_usd"]) == round(((7200 - 1050) * P1 + (1800 - 500) * P3) / 3600, 6)
    assert namespaces["agents"]["activity_source"] == "dcgm,spans"
    node = report(dataset, "node")["node-1"]
    assert node["slices"] == 4
    assert node["allocated_slice_hours"] == round((7200 + 3600 + 1800 + 3000) / 3600, 6)


def test_by_agent_and_task_attribute_busy_time_by_span_share(dataset: Path) -> None:
    agents = report(dataset, "agent")
    # coder: S1 10 s (seg 1 of 900 busy s, 3600 allocated) + 30 s (seg 2 of 150, 3600); S3 240 + 100 of 500
    coder_alloc = 3600 * 10 / 900 + 3600 * 30 / 150 + 1800 * 340 / 500
    writer_alloc = 3600 * 20 / 900 + 1800 * 160 / 500
    assert agents["coder"]["busy_slice_hours"] == round(340 / 3600 + 40 / 3600, 6)
    assert usd(agents["coder"]["busy_cost_usd"]) == round((40 * P1 + 340 * P3) / 3600, 6)
    assert agents["coder"]["allocated_slice_hours"] == round(coder_alloc / 3600, 6)
    assert usd(agents["coder"]["allocated_cost_usd"]) == round(((3600 * 10 / 900 + 720) * P1 + 1224 * P3) / 3600, 6)
    assert agents["writer"]["busy_slice_hours"] == round(180 / 3600, 6)
    assert agents["writer"]["allocated_slice_hours"] == round(writer_alloc / 3600, 6)
    # busy time no span covers, and idle time of segments nobody used, stay unattributed
    assert agents[None]["busy_slice_hours"] == round((1050 + 0 + 500 + 1500 - 380 - 180) / 3600, 6)
    total = sum(r["allocated_slice_hours"] for r in agents.values())
    assert total == pytest.approx((7200 + 3600 + 1800 + 3000) / 3600, abs=1e-5)
    tasks = report(dataset, "task")
    assert tasks[TRACE_CODER.hex()]["busy_cost_usd"] == agents["coder"]["busy_cost_usd"]
    assert tasks[TRACE_WRITER.hex()]["busy_slice_hours"] == round(180 / 3600, 6)


def test_span_gpu_costs_view(dataset: Path) -> None:
    from analyzer.gpu import install_gpu_costs

    con = open_dataset(dataset).con
    install_gpu_costs(con)
    rows = [
        (span_id[-1], cost)
        for span_id, cost in con.execute(
            "SELECT span_id, round(gpu_cost_usd * 3600, 6)::DOUBLE FROM span_gpu_costs ORDER BY trace_id, span_id"
        ).fetchall()
    ]
    assert rows == [
        (1, round(10 * P1, 6)),
        (2, round(30 * P1, 6)),
        (3, round(240 * P3, 6)),
        (4, round(100 * P3, 6)),
        (1, round(20 * P1, 6)),
        (2, round(160 * P3, 6)),
    ]


def test_timeline_per_slice_and_step(dataset: Path) -> None:
    from analyzer.gpu import gpu_timeline, install_gpu_views

    con = open_dataset(dataset).con
    install_gpu_views(con)
    rows = [r for r in gpu_timeline(con, step_seconds=1800) if r["slice_id"] == S1]
    got = [(int((r["time"] - T0).total_seconds()), r["allocated_s"], r["busy_s"]) for r in rows]
    # [3600, 5400): allocated from 3700 on; the 0.25 samples [3700, 4300) are busy 150 s
    assert got == [(0, 1800, 900), (1800, 1800, 0), (3600, 1700, 150), (5400, 1800, 0), (7200, 100, 0)]
    assert rows[0]["utilization"] == 0.5


def test_window_clips_allocations_and_samples(dataset: Path) -> None:
    rows = report(dataset, "slice", since=T0 + timedelta(seconds=3000), until=T0 + timedelta(seconds=4000))
    assert figures(rows[S1]) == expected(600 + 300, 300 * 0.25, P1)
    assert figures(rows[S2]) == expected(600, 0, PG)
    assert set(rows) == {S1, S2}  # S3 held over [0, 1800] only; S4 until 3000


def test_price_file_overrides_and_mig_fraction_rule(dataset: Path, tmp_path: Path) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text("gpu_usd_per_hour: 7.0\nprofiles:\n  1g.10gb: 1.0\n")
    rows = report(dataset, "slice", gpu_prices_file=prices)
    assert usd(rows[S1]["allocated_cost_usd"]) == 2.0
    assert usd(rows[S2]["allocated_cost_usd"]) == 7.0
    assert usd(rows[S3]["allocated_cost_usd"]) == round(0.5 * 7.0 * 3 / 7, 6)  # 3g.* not listed: 3/7 of a whole GPU


def test_example_price_file_holds_the_defaults() -> None:
    prices = GpuPrices.load(example_prices_file())
    assert prices.gpu_usd_per_hour == DEFAULT_GPU_USD_PER_HOUR
    assert prices.profiles == DEFAULT_PROFILE_PRICES


def test_cli_json_and_errors(dataset: Path, capsys) -> None:
    assert main(["gpu", "--data", str(dataset), "--by", "namespace", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["namespace"] for r in out] == ["batch", "team-b", "agents"]  # by cost: 4.00, 3.33, 1.995
    assert {r["namespace"]: r["allocated_slice_hours"] for r in out}["batch"] == 1.0
    assert main(["gpu", "--data", str(dataset), "--by", "colour"]) == 2
    assert "colour" in capsys.readouterr().err
    bad = dataset / "bad.yaml"
    bad.write_text("gpu_usd_per_hour: -1\n")
    assert main(["gpu", "--data", str(dataset), "--gpu-prices", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "gpu_usd_per_hour must be a number >= 0" in err and err.count("\n") == 1
    assert main(["gpu", "--data", str(dataset), "--since", "yesterday-ish"]) == 2


def test_empty_dataset_reports_nothing(data_dir: Path) -> None:
    DatasetFiles(data_dir, "w")
    (data_dir / "spans").mkdir()
    assert gpu_report(open_dataset(data_dir).con, "agent") == []
    with pytest.raises(AnalyzerError, match="unknown grouping"):
        gpu_report(open_dataset(data_dir).con, "gpu")


def test_report_sections_for_analyze_report(dataset: Path, data_dir: Path) -> None:
    from analyzer.gpu_charts import gpu_sections as report_sections

    sections = dict(report_sections(open_dataset(dataset)))
    assert list(sections) == ["GPU slice utilization", "Idle GPU slice-hours by namespace", "GPU cost by agent"]
    assert len(sections["GPU slice utilization"].data) == 4
    bars = sections["GPU cost by agent"].data[0]
    assert usd(dict(zip(bars.x, bars.y, strict=True))["writer"]) == round((20 * P1 + 160 * P3) / 3600, 6)
