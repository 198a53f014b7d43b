"""The PodResources poller against a fake kubelet (a real gRPC server on a unix socket), exact intervals."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import duckdb
import pytest
from structlog.testing import capture_logs

from collector_ext.config import ReceiverConfig
from collector_ext.demo.fake_kubelet import (
    KUBELET_1_20,
    KUBELET_1_26,
    KUBELET_1_30,
    KUBELET_1_34,
    NVIDIA_COMPUTE_DOMAIN_DRIVER,
    Claim,
    Container,
    FakeKubelet,
    Pod,
)
from collector_ext.gpu.podresources import PodResourcesPoller
from collector_ext.storage.dataset_files import DatasetFiles

NS = 1_000_000_000

POD_A = Pod("agents", "vllm-a", (Container("server", claims=(Claim("a-gpu", "gpu-0-mig-1g10gb-0"),)),))
POD_B = Pod(
    "agents",
    "trainer",
    (Container("main", devices=(("nvidia.com/gpu", ("GPU-2", "GPU-1")), ("example.com/nic", ("nic-0",)))),),
)
POD_C = Pod(  # two containers sharing one claim
    "agents",
    "multi",
    (
        Container("main", claims=(Claim("c-gpu", "gpu-0-mig-2g20gb-1"),)),
        Container("sidecar", claims=(Claim("c-gpu", "gpu-0-mig-2g20gb-1"),)),
    ),
)
POD_D1 = Pod("team-b", "shared-1", (Container("app", claims=(Claim("d1", "gpu-1", share_id="s-1"),)),))
POD_D2 = Pod("team-b", "shared-2", (Container("app", claims=(Claim("d2", "gpu-1", share_id="s-2"),)),))
POD_E = Pod(
    "agents",
    "vllm-e",
    (Container("server", devices=(("nvidia.com/mig-1g.10gb", ("MIG-abc",)),), claims=(Claim("e-gpu", "gpu-2"),)),),
)

# (time s, pods, the kubelet's release)
SCRIPT = [
    (1000, [POD_A, POD_B, POD_C, POD_D1, POD_D2], KUBELET_1_34),
    (1010, [POD_A, POD_B, POD_C, POD_D1, POD_D2], KUBELET_1_34),
    (1020, [POD_B, POD_C, POD_D1, POD_D2, POD_E], KUBELET_1_34),  # A gone, E arrives
    (1030, [POD_A, POD_B, POD_C, POD_D1, POD_D2, POD_E], KUBELET_1_34),  # A restarted
    (1040, [POD_A, POD_B, POD_C, POD_D1, POD_D2, POD_E], KUBELET_1_20),  # no Get, no dynamic_resources
    (1050, [POD_B, POD_C, POD_E], KUBELET_1_34),
]


@pytest.fixture
def socket_dir():
    # unix socket paths are limited to ~107 bytes: pytest's tmp_path can be longer
    path = Path(tempfile.mkdtemp(prefix="kl-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_poller(socket: Path, data_dir: Path, clock, interval: float = 10.0, flush_seconds: float = 20.0):
    config = ReceiverConfig(
        data_dir=data_dir,
        writer_id="w1",
        podresources_socket=socket,
        podresources_interval_seconds=interval,
        node_name="node-1",
    )
    return PodResourcesPoller(config, DatasetFiles(data_dir, "w1"), clock=clock, flush_seconds=flush_seconds)


def intervals(data_dir: Path) -> list[tuple]:
    """The intervals as the analyzer must read them: max(last_seen) per allocation and first_seen."""
    sql = """
        SELECT namespace, pod, container, source, claim_name, claim_namespace, driver, pool, device,
               share_id, resource_name, device_ids, cdi_devices,
               epoch(first_seen)::BIGINT, epoch(max(last_seen))::BIGINT, node
        FROM read_parquet($glob)
        GROUP BY ALL
        ORDER BY pod, container, source, 14, driver
    """
    return duckdb.connect().execute(sql, {"glob": str(data_dir / "gpu_allocations" / "*" / "*.parquet")}).fetchall()


def dra(ns, pod, container, claim, device, first, last, share=None, pool="node-1"):
    cdi = [f"k8s.gpu.nvidia.com/claim={claim}-{device}"]
    return (ns, pod, container, "dra", claim, ns, "gpu.nvidia.com", pool, device, share, None, None, cdi, first, last)


def plugin(ns, pod, container, resource, ids, first, last):
    return (ns, pod, container, "device_plugin", None, None, None, None, None, None, resource, ids, None, first, last)


EXPECTED = [
    dra("agents", "multi", "main", "c-gpu", "gpu-0-mig-2g20gb-1", 1000, 1030),
    dra("agents", "multi", "main", "c-gpu", "gpu-0-mig-2g20gb-1", 1050, 1050),
    dra("agents", "multi", "sidecar", "c-gpu", "gpu-0-mig-2g20gb-1", 1000, 1030),
    dra("agents", "multi", "sidecar", "c-gpu", "gpu-0-mig-2g20gb-1", 1050, 1050),
    dra("team-b", "shared-1", "app", "d1", "gpu-1", 1000, 1030, share="s-1"),
    dra("team-b", "shared-2", "app", "d2", "gpu-1", 1000, 1030, share="s-2"),
    plugin("agents", "trainer", "main", "nvidia.com/gpu", ["GPU-1", "GPU-2"], 1000, 1050),  # open at stop
    dra("agents", "vllm-a", "server", "a-gpu", "gpu-0-mig-1g10gb-0", 1000, 1010),
    dra("agents", "vllm-a", "server", "a-gpu", "gpu-0-mig-1g10gb-0", 1030, 1030),  # after the restart
    plugin("agents", "vllm-e", "server", "nvidia.com/mig-1g.10gb", ["MIG-abc"], 1020, 1050),
    dra("agents", "vllm-e", "server", "e-gpu", "gpu-2", 1020, 1030),
    dra("agents", "vllm-e", "server", "e-gpu", "gpu-2", 1050, 1050),
]


def test_changing_cluster_gives_exact_intervals(socket_dir: Path, data_dir: Path) -> None:
    socket = socket_dir / "kubelet.sock"
    clock = Clock(0)
    with FakeKubelet(socket) as kubelet, capture_logs() as logs:
        poller = make_poller(socket, data_dir, clock)
        for at, pods, features in SCRIPT:
            kubelet.set_pods(pods, features=features)
            clock.now = at
            assert poller.poll_once() is True
        clock.now = 1060
        poller.stop()
        assert kubelet.calls["List"] == len(SCRIPT)
    got = intervals(data_dir)
    assert [row[:-1] for row in got] == EXPECTED
    assert {row[-1] for row in got} == {"node-1"}
    # open intervals were re-written at the periodic flushes (t=1020, 1040) and at stop: more rows than intervals
    raw = (
        duckdb.connect()
        .execute("SELECT count(*) FROM read_parquet($glob)", {"glob": str(data_dir / "gpu_allocations/*/*.parquet")})
        .fetchone()[0]
    )
    # t=1020: A closed + 7 open; t=1040 (no DRA): 6 DRA closed + B, E's plugin GPU open; stop: 5 open
    assert raw == 8 + 8 + 5
    events = sorted(entry["event"] for entry in logs if entry["log_level"] == "warning")
    assert len(events) == 2
    assert events[0].startswith("kubelet does not serve GetAllocatableResources")
    assert events[1].startswith("this kubelet is older than 1.27 and has no PodResources Get")


def test_legacy_kubelet_is_reported_once_and_device_plugin_gpus_still_recorded(
    socket_dir: Path, data_dir: Path
) -> None:
    socket = socket_dir / "kubelet.sock"
    clock = Clock(2000)
    with FakeKubelet(socket, [POD_A, POD_B], features=KUBELET_1_20), capture_logs() as logs:
        poller = make_poller(socket, data_dir, clock)
        for at in (2000, 2010, 2020):
            clock.now = at
            assert poller.poll_once() is True
        poller.stop()
    assert [row[:-1] for row in intervals(data_dir)] == [
        plugin("agents", "trainer", "main", "nvidia.com/gpu", ["GPU-1", "GPU-2"], 2000, 2020)
    ]
    events = sorted(entry["event"] for entry in logs if entry["log_level"] == "warning")
    assert len(events) == 2
    assert events[0].startswith("kubelet does not serve GetAllocatableResources")
    assert events[1].startswith("this kubelet is older than 1.27 and has no PodResources Get")


def test_missing_socket_is_reported_once_then_recovers(socket_dir: Path, data_dir: Path) -> None:
    socket = socket_dir / "kubelet.sock"
    clock = Clock(3000)
    poller = make_poller(socket, data_dir, clock)
    with capture_logs() as logs:
        for at in (3000, 3010, 3020):
            clock.now = at
            assert poller.poll_once() is False
        with FakeKubelet(socket, [POD_A]):
            clock.now = 3030
            assert poller.poll_once() is True
            clock.now = 3040
            assert poller.poll_once() is True
            poller.stop()
    warnings = [e["event"] for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1
    assert warnings[0].startswith("kubelet PodResources socket not found")
    assert [e["event"] for e in logs if e["log_level"] == "info"] == ["kubelet PodResources API reachable"]
    assert [row[:-1] for row in intervals(data_dir)] == [
        dra("agents", "vllm-a", "server", "a-gpu", "gpu-0-mig-1g10gb-0", 3030, 3040)
    ]


def test_outage_of_three_failed_polls_closes_intervals(socket_dir: Path, data_dir: Path) -> None:
    socket = socket_dir / "kubelet.sock"
    clock = Clock(4000)
    poller = make_poller(socket, data_dir, clock, flush_seconds=10_000)
    with FakeKubelet(socket, [POD_A]) as kubelet:
        for at in (4000, 4010):
            clock.now = at
            poller.poll_once()
        kubelet.stop()
        for at in (4020, 4030, 4040):  # three polls in a row without an answer: the outage is not bridged
            clock.now = at
            assert poller.poll_once() is False
        assert poller.open_intervals == 0
        kubelet.start()
        for at in (4050, 4060):
            clock.now = at
            assert poller.poll_once() is True
        poller.stop()
    assert [row[-3:-1] for row in intervals(data_dir)] == [(4000, 4010), (4050, 4060)]


def test_late_polls_and_a_short_outage_do_not_split_an_interval(socket_dir: Path, data_dir: Path) -> None:
    """A poll that comes late (the receiver starved of CPU: 40 s between snapshots at a 10 s interval) is no
    outage, and neither are two failed polls in a row: the allocation seen on both sides goes on."""
    socket = socket_dir / "kubelet.sock"
    clock = Clock(5000)
    poller = make_poller(socket, data_dir, clock, flush_seconds=10_000)
    with FakeKubelet(socket, [POD_A]) as kubelet:
        for at in (5000, 5040):
            clock.now = at
            assert poller.poll_once() is True
        kubelet.stop()
        for at in (5050, 5060):
            clock.now = at
            assert poller.poll_once() is False
        kubelet.start()
        clock.now = 5070
        assert poller.poll_once() is True
        poller.stop()
    assert [row[-3:-1] for row in intervals(data_dir)] == [(5000, 5070)]


def test_background_thread_polls_and_stop_writes_open_intervals(socket_dir: Path, data_dir: Path) -> None:
    socket = socket_dir / "kubelet.sock"
    with FakeKubelet(socket, [POD_A, POD_C]) as kubelet:
        poller = make_poller(socket, data_dir, time.time, interval=0.05)
        poller.start()
        deadline = time.monotonic() + 10
        while kubelet.calls["List"] < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        poller.stop()
        assert kubelet.calls["List"] >= 3
    got = intervals(data_dir)
    assert [(r[1], r[2]) for r in got] == [("multi", "main"), ("multi", "sidecar"), ("vllm-a", "server")]
    assert all(r[-2] >= r[-3] for r in got)


def test_only_claims_of_gpu_drivers_are_gpu_slices(socket_dir: Path, data_dir: Path) -> None:
    """An IMEX channel (compute-domain.nvidia.com) and a NIC are DRA claims, not GPUs; AMD's driver counts
    once it is named in --gpu-drivers."""
    socket = socket_dir / "kubelet.sock"
    pod = Pod(
        "agents",
        "trainer",
        (
            Container(
                "main",
                claims=(
                    Claim("gpu", "gpu-0"),
                    Claim("imex", "channel-0", driver=NVIDIA_COMPUTE_DOMAIN_DRIVER),
                    Claim("nic", "eth1", driver="sriovnetwork.k8snetworkplumbingwg.io"),
                    Claim("amd", "gpu-3", driver="gpu.amd.com"),
                ),
            ),
        ),
    )
    recorded = {}
    for name, drivers in (("default", {}), ("with AMD", {"gpu_drivers": ["gpu.nvidia.com", "gpu.amd.com"]})):
        root = data_dir / name
        with FakeKubelet(socket, [pod]):
            config = ReceiverConfig(data_dir=root, writer_id="w1", podresources_socket=socket, **drivers)
            poller = PodResourcesPoller(config, DatasetFiles(root, "w1"), clock=Clock(5000))
            assert poller.poll_once() is True
            poller.stop()
        recorded[name] = [(row[6], row[8]) for row in intervals(root)]
    assert recorded == {
        "default": [("gpu.nvidia.com", "gpu-0")],
        "with AMD": [("gpu.amd.com", "gpu-3"), ("gpu.nvidia.com", "gpu-0")],
    }


def test_answers_up_to_16_mib_are_read(socket_dir: Path, data_dir: Path) -> None:
    """A big node's List answer passes gRPC's default 4 MiB; the kubelet's own client accepts 16 MiB."""
    socket = socket_dir / "kubelet.sock"
    filler = [Pod("batch", f"job-{i:05d}-" + "x" * 200, (Container("c" * 60),)) for i in range(20_000)]
    with FakeKubelet(socket, [*filler, POD_A]):
        poller = make_poller(socket, data_dir, Clock(6000))
        assert poller.poll_once() is True
        poller.stop()
    assert [row[:-1] for row in intervals(data_dir)] == [
        dra("agents", "vllm-a", "server", "a-gpu", "gpu-0-mig-1g10gb-0", 6000, 6000)
    ]


@pytest.mark.parametrize(
    ("features", "code", "why"),
    [
        (KUBELET_1_30, "UNKNOWN", "this kubelet's PodResources Get is disabled (feature gate KubeletPodResourcesGet"),
        (KUBELET_1_26, "UNIMPLEMENTED", "this kubelet is older than 1.27 and has no PodResources Get"),
    ],
)
def test_a_kubelet_without_get_is_named_with_its_feature_gates(socket_dir, data_dir, features, code, why) -> None:
    socket = socket_dir / "kubelet.sock"
    clock = Clock(7000)
    with FakeKubelet(socket, [POD_A, POD_B], features=features), capture_logs() as logs:
        poller = make_poller(socket, data_dir, clock)
        for at in (7000, 7010):
            clock.now = at
            assert poller.poll_once() is True
        poller.stop()
    (warning,) = [e for e in logs if e["log_level"] == "warning"]
    assert warning["event"].startswith(why)
    assert "KubeletPodResourcesDynamicResources and KubeletPodResourcesGet" in warning["event"]
    assert warning["code"] == code
    # the device-plugin GPU is still recorded; the DRA claim is invisible to this kubelet's List
    assert [row[3] for row in intervals(data_dir)] == ["device_plugin"]


def test_get_of_a_pod_that_ended_is_not_taken_for_a_missing_feature(socket_dir: Path, data_dir: Path) -> None:
    """The kubelet answers Get of an unknown pod with UNKNOWN too (pkg/kubelet/apis/podresources/server_v1.go):
    that says nothing about its features, so no warning, and the next poll asks again."""
    socket = socket_dir / "kubelet.sock"
    clock = Clock(8000)
    with (
        FakeKubelet(socket, [POD_B], features=KUBELET_1_34, pods_end_after_list=True) as kubelet,
        capture_logs() as logs,
    ):
        poller = make_poller(socket, data_dir, clock)
        for at in (8000, 8010):
            clock.now = at
            assert poller.poll_once() is True
        poller.stop()
        assert kubelet.calls["Get"] == 2
    assert [e for e in logs if e["log_level"] == "warning"] == []
