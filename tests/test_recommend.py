"""`analyze recommend`: plans chosen exactly on constructed arrival sequences by replaying them as KEDA and the
Agent Sandbox pool controller would run them; the pool and the ScaledObject tell that one plan (issue 12,
findings 3 and 4); costs come from data where they can, else are named as assumptions; the YAML validates
against the upstream CRDs' schemas."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pyarrow as pa
import pytest
import yaml
from crd_schemas import validate_custom_resource
from idle_datasets import BASE_NS, Run, bursty, periodic, poisson, write_runs

from analyzer.cli import main
from analyzer.dataset import AnalyzerError, open_dataset
from analyzer.gpu import GpuPrices
from analyzer.idle import analyze_idle
from analyzer.recommend import Costs, emit_yaml, k8s_name, recommend, recommend_agent
from analyzer.sandbox_cost import agent_gpu_costs
from analyzer.warm_pool import KedaPlan, replay_plan
from collector_ext.schema import GPU_ALLOCATIONS
from collector_ext.storage.dataset_files import DatasetFiles


def parse(text: str) -> dict[str, dict]:
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    for doc in docs:
        validate_custom_resource(doc)
    return {doc["kind"]: doc for doc in docs}


def group(data_dir: Path, agent: str, **kw):
    (found,) = analyze_idle(open_dataset(data_dir), group=agent, with_scale_up_gaps=True, with_arrivals=True, **kw)
    return found


def comments(text: str, kind: str) -> list[str]:
    """The comment lines right above the document of `kind`."""
    for block in text.split("---\n"):
        if f"kind: {kind}\n" in block:
            lines = block.splitlines()
            above = lines[: lines.index(next(line for line in lines if line.startswith("apiVersion:")))]
            run = []
            for line in reversed(above):
                if not line.startswith("# "):
                    break
                run.insert(0, line[2:])
            return run
    raise AssertionError(kind)


def write_mig_slice_of_vllm_0(data_dir: Path) -> None:
    """Pod vllm-0 held a 1g.10gb MIG slice (a DRA claim of gpu.nvidia.com) for 6000 s from BASE_NS."""
    allocation = {
        "node": "n1", "namespace": "team-a", "pod": "vllm-0", "container": "server", "source": "dra",
        "claim_name": "c", "claim_namespace": "team-a", "driver": "gpu.nvidia.com", "pool": "n1",
        "device": "gpu-0-mig-1g10gb-19-0", "cdi_devices": None, "share_id": None, "resource_name": None,
        "device_ids": None, "first_seen": BASE_NS, "last_seen": BASE_NS + 6000 * 10**9,
    }  # fmt: skip
    DatasetFiles(data_dir, "poller").write(
        "gpu_allocations", pa.Table.from_pylist([allocation], schema=GPU_ALLOCATIONS)
    )


def test_periodic_agent_scales_to_zero_after_the_cheapest_cooldown(data_dir: Path) -> None:
    # 10 runs every 600 s lasting 60 s; 8 s start-up (the default), KEDA polls every 8 s
    write_runs(data_dir, periodic("planner", 10, every_s=600, duration_s=60))
    g = group(data_dir, "planner")
    rec = recommend(g, 0.99, Costs(idle_cost_per_hour=0.1, cold_start_cost=0.01))
    by_plan = {(c.plan.warm_floor, c.plan.cooldown_s): c for c in rec.candidates}
    # a claim's replacement sandbox is wanted for the 60 s window and then kept for the cooldown: the metric last
    # reads > 0 at the poll at 600 k + 56 s, so a cooldown of 300 s scales to zero before every next claim (all 9
    # cold) and 600 s outlasts the 544 s left (all warm, one unclaimed sandbox all along)
    assert (by_plan[0, 300].result.empty_claims, by_plan[0, 600].result.empty_claims) == (9, 0)
    # with 300 s each claim's sandbox is held from the claim to the first poll at or after 56 + 300 s: 360 s (the
    # last claim ends the observed window)
    assert by_plan[0, 300].result.unclaimed_s == pytest.approx(9 * 360)
    assert by_plan[0, 600].result.unclaimed_s == pytest.approx(5400)
    assert (rec.plan.plan.warm_floor, rec.plan.plan.cooldown_s, rec.plan.warm_hit) == (0, 600, 1.0)
    assert rec.plan.cost_per_day == pytest.approx(24 * 0.1)
    assert rec.scale_to_zero is True
    assert (rec.max_replicas, rec.polling_interval_s, rec.stabilization_window_s) == (1, 8, 300)

    text = emit_yaml(rec, "all", namespace="agents", scaler_address="agentmeter.obs:9090")
    docs = parse(text)
    assert docs["SandboxWarmPool"] == {
        "apiVersion": "extensions.agents.x-k8s.io/v1beta1",
        "kind": "SandboxWarmPool",
        "metadata": {
            "name": "planner-warm-pool",
            "labels": {"app.kubernetes.io/managed-by": "agentmeter"},
            "namespace": "agents",
        },
        "spec": {"sandboxTemplateRef": {"name": "planner"}},  # no replicas: KEDA owns them
    }
    spec = docs["ScaledObject"]["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "extensions.agents.x-k8s.io/v1beta1",
        "kind": "SandboxWarmPool",
        "name": "planner-warm-pool",
    }
    assert (spec["cooldownPeriod"], spec["minReplicaCount"], spec["maxReplicaCount"], spec["pollingInterval"]) == (
        600,
        0,
        1,
        8,
    )
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == {
        "scaleUp": {"stabilizationWindowSeconds": 0},
        "scaleDown": {"stabilizationWindowSeconds": 300},
    }
    assert spec["triggers"] == [
        {
            "type": "external",
            "metricType": "AverageValue",
            "metadata": {
                "scalerAddress": "agentmeter.obs:9090",
                "agent": "planner",
                "target": "unclaimedSandboxes",
                "warmFloor": "0",
                "startupSeconds": "8",
                "rateWindowSeconds": "60",
                "targetPerReplica": "1",
                "namespace": "agents",
            },
        }
    ]
    assert "# replayed over the observed claims: warm-hit 100.00%, 24.00 unclaimed sandbox-hours/day, $2.40/day" in text
    assert "# for comparison, a static pool of 1 without KEDA (--emit warmpool): warm-hit 100.00%, $2.40/day" in text
    assert "# scaleDown.stabilizationWindowSeconds 300 s (the 1..N range): never two runs at once" in text
    assert (
        "#   url: http://agentmeter.obs:4318/v1/demand?agent=planner&target=unclaimedSandboxes&warmFloor=0"
        "&startupSeconds=8&rateWindowSeconds=60&namespace=agents, valueLocation: value" in text
    )


@pytest.mark.parametrize("emit", ["all", "keda"])
def test_the_pool_and_the_scaled_object_tell_the_same_plan(data_dir: Path, emit: str) -> None:
    """Replaying the plan read back from the emitted ScaledObject gives the figures printed for it, the pool
    carries no replicas for KEDA to fight over, and both documents head with the same plan."""
    write_runs(data_dir, bursty("burst", 3, 4, inner_gap_s=5, pause_s=3600, duration_s=10))
    g = group(data_dir, "burst", cold_start_s=20)
    rec = recommend(g, 0.9, Costs(0.1, 0.5))
    text = emit_yaml(rec, emit)
    docs = parse(text)
    spec = docs["ScaledObject"]["spec"]
    metadata = spec["triggers"][0]["metadata"]
    assert spec["minReplicaCount"] == int(metadata["warmFloor"])
    emitted = KedaPlan(
        warm_floor=spec["minReplicaCount"],
        cooldown_s=spec["cooldownPeriod"],
        startup_s=float(metadata["startupSeconds"]),
        rate_window_s=float(metadata["rateWindowSeconds"]),
        polling_s=spec["pollingInterval"],
        stabilization_s=spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"][
            "stabilizationWindowSeconds"
        ],
        max_replicas=spec["maxReplicaCount"],
    )
    replayed = replay_plan(g.arrivals_ns, emitted)
    assert replayed == rec.plan.result
    assert f"warm-hit {(1 - replayed.empty_fraction) * 100:.2f}%" in text
    if emit == "all":
        assert "replicas" not in docs["SandboxWarmPool"]["spec"]
        assert comments(text, "SandboxWarmPool")[0] == comments(text, "ScaledObject")[0]
    else:
        assert set(docs) == {"ScaledObject"}
        assert "scales SandboxWarmPool burst-warm-pool (apply it without spec.replicas)" in comments(
            text, "ScaledObject"
        )


def test_rare_agent_needs_a_warm_floor(data_dir: Path) -> None:
    # one run every 2 days: no cooldown (up to 1 day) outlasts a gap; a floor of one sandbox catches them all
    write_runs(data_dir, periodic("nightly", 5, every_s=172_800, duration_s=60))
    rec = recommend(group(data_dir, "nightly"), 0.99, Costs(0.1, 0.01))
    assert all(c.result.empty_claims == 4 for c in rec.candidates if c.plan.warm_floor == 0)
    assert (rec.warm_floor, rec.plan.warm_hit, rec.scale_to_zero) == (1, 1.0, False)
    # each claim asks for 1 + 1/60 x 8 -> 2 sandboxes for the 60 s window, kept the 300 s scale-down window after
    assert rec.max_replicas == 2
    spec = parse(emit_yaml(rec, "keda"))["ScaledObject"]["spec"]
    assert (spec["minReplicaCount"], spec["triggers"][0]["metadata"]["warmFloor"]) == (1, "1")


def test_a_static_pool_without_keda_keeps_its_replicas(data_dir: Path) -> None:
    # 3 bursts of 4 claims 5 s apart; 20 s start-up: static pools of 0..4 find the pool empty 12, 9, 6, 3, 0 times
    write_runs(data_dir, bursty("burst", 3, 4, inner_gap_s=5, pause_s=3600, duration_s=10))
    g = group(data_dir, "burst", cold_start_s=20)
    assert [r.empty_claims for r in g.warm_pool] == [12, 9, 6, 3, 0]
    per_day = 11 / (7215 / 86_400)
    cheap_cold = recommend(g, 0.5, Costs(idle_cost_per_hour=0.1, cold_start_cost=0.0))
    assert (cheap_cold.static_pool.setting, cheap_cold.static_pool.warm_hit) == (2, 0.5)
    dear_cold = recommend(g, 0.5, Costs(idle_cost_per_hour=0.1, cold_start_cost=100.0))
    assert dear_cold.static_pool.setting == 4  # no cold starts beats 6/12 * per_day * $100
    assert dear_cold.static_pool.cost_per_day == pytest.approx(4 * 24 * 0.1)
    assert 2 * 24 * 0.1 + 0.5 * per_day * 100.0 > dear_cold.static_pool.cost_per_day
    pool = parse(emit_yaml(dear_cold, "warmpool"))["SandboxWarmPool"]
    assert pool["spec"] == {"replicas": 4, "sandboxTemplateRef": {"name": "burst"}}
    # unreachable target: the size with the best warm-hit rate, marked as below the target
    capped = group(data_dir, "burst", cold_start_s=20, max_pool_size=2)
    best = recommend(capped, 0.99, Costs(0.1, 0.01))
    assert (best.static_pool.setting, best.static_pool.meets_target) == (2, False)
    assert "BELOW the target" in emit_yaml(best, "warmpool")


def test_bursts_faster_than_a_start_up_need_the_floor_the_replay_finds(data_dir: Path) -> None:
    write_runs(data_dir, bursty("burst", 3, 4, inner_gap_s=5, pause_s=3600, duration_s=10))
    rec = recommend(group(data_dir, "burst", cold_start_s=20), 0.99, Costs(0.1, 0.01))
    floors = {}
    for c in rec.candidates:
        floors[c.plan.warm_floor] = min(floors.get(c.plan.warm_floor, 99), c.result.empty_claims)
    # 4 claims within 15 s and 20 s start-ups: only what is ready when a burst begins serves it
    assert floors == {0: 7, 1: 5, 2: 2, 3: 1, 4: 0}
    assert (rec.warm_floor, rec.plan.warm_hit) == (4, 1.0)


def test_scale_down_window_from_the_second_replicas_idle_gaps(data_dir: Path) -> None:
    # every 600 s: A [0, 60) with B [10, 20) and C [40, 50) inside it: the 2nd replica idles 20 s within a
    # period and 560 s between periods (10 x 20 s, 9 x 560 s); observed window 5440 s
    pairs = [Run("pairs", p * 600 + at, length) for p in range(10) for at, length in ((0, 60), (10, 10), (40, 10))]
    write_runs(data_dir, pairs)
    g = group(data_dir, "pairs")
    days = 5440 / 86_400
    strict = recommend(g, 0.99, Costs(0.1, 0.01))
    # only windows >= 560 s catch every return; all of them idle the same 200 + 9 x 560 s: the smallest
    assert (strict.scale_down.setting, strict.scale_down.warm_hit, strict.stabilization_window_s) == (600, 1.0, 600)
    assert strict.scale_down.cost_per_day == pytest.approx((200 + 9 * 560) / days / 3600 * 0.1)
    assert {c.plan.stabilization_s for c in strict.candidates} == {600}  # every plan replays with it
    loose = recommend(g, 0.5, Costs(0.1, 0.01))
    # 30 s catches the 10 short returns (10/19 >= 0.5) and is cheaper than 600 s even with 9 cold returns
    assert (loose.scale_down.setting, loose.scale_down.warm_hit) == (30, pytest.approx(10 / 19))
    assert loose.scale_down.cost_per_day == pytest.approx((200 + 9 * 30) / days / 3600 * 0.1 + 9 / days * 0.01)
    text = emit_yaml(loose, "keda")
    spec = parse(text)["ScaledObject"]["spec"]
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"] == {
        "stabilizationWindowSeconds": 30
    }
    assert "# scaleDown.stabilizationWindowSeconds 30 s (the 1..N range): 52.63% of 19 returns" in text


def test_schemas_reject_what_the_crds_reject(data_dir: Path) -> None:
    write_runs(data_dir, periodic("planner", 10, every_s=600, duration_s=60))
    docs = parse(emit_yaml(recommend(group(data_dir, "planner"), 0.99, Costs(0.1, 0.01))))
    unknown = copy.deepcopy(docs["ScaledObject"])
    unknown["spec"]["minReplicas"] = 0
    negative_pool = copy.deepcopy(docs["SandboxWarmPool"])
    negative_pool["spec"]["replicas"] = -1
    no_template = copy.deepcopy(docs["SandboxWarmPool"])
    del no_template["spec"]["sandboxTemplateRef"]
    for doc in (unknown, negative_pool, no_template):
        with pytest.raises(jsonschema.ValidationError):
            validate_custom_resource(doc)


def test_names_and_errors(data_dir: Path) -> None:
    assert k8s_name("Research Agent/v2") == "research-agent-v2"
    assert k8s_name("***") == "agent"
    write_runs(data_dir, [Run("solo", 0, 5)])
    with pytest.raises(AnalyzerError, match="need at least two arrivals"):
        recommend(group(data_dir, "solo"), 0.99, Costs(0.1, 0.01))
    with pytest.raises(AnalyzerError, match="target-warm-hit"):
        recommend(group(data_dir, "solo"), 1.5, Costs(0.1, 0.01))
    with pytest.raises(AnalyzerError, match="must be >= 0"):
        Costs(-1, 0)
    write_runs(data_dir, periodic("p", 3, every_s=60, duration_s=1), writer_id="second")
    (without,) = analyze_idle(open_dataset(data_dir), group="p", with_scale_up_gaps=True)
    with pytest.raises(ValueError, match="with_arrivals=True"):
        recommend(without, 0.99, Costs(0.1, 0.01))


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["recommend", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_runs(data_dir, periodic("planner", 10, every_s=600, duration_s=60, namespace="team-b"))
    args = ["--data", str(data_dir), "--agent", "planner"]
    code, out, _ = run_cli(capsys, *args, "--namespace", "team-b", "--cold-start", "30s", "--template", "py-sandbox")
    assert code == 0
    docs = parse(out)
    assert docs["SandboxWarmPool"]["spec"] == {"sandboxTemplateRef": {"name": "py-sandbox"}}
    assert docs["ScaledObject"]["spec"]["pollingInterval"] == 30
    assert docs["ScaledObject"]["spec"]["triggers"][0]["metadata"]["startupSeconds"] == "30"
    assert docs["ScaledObject"]["metadata"]["namespace"] == "team-b"
    code, out, _ = run_cli(capsys, *args, "--emit", "warmpool")
    assert code == 0 and set(parse(out)) == {"SandboxWarmPool"}
    assert run_cli(capsys, *args, "--namespace", "elsewhere")[0] == 2
    assert run_cli(capsys, "--data", str(data_dir), "--agent", "nobody")[0] == 2
    assert run_cli(capsys, *args, "--target-warm-hit", "1.5")[0] == 2
    code, _, err = run_cli(capsys, *args, "--emit", "helm")
    assert code == 2 and "Traceback" not in err


def test_costs_come_from_data_or_are_named_assumptions(data_dir: Path, tmp_path: Path, capsys) -> None:
    write_runs(data_dir, periodic("planner", 10, every_s=600, duration_s=60))
    args = ["--data", str(data_dir), "--agent", "planner"]
    # nothing known: the default is named as an assumption, the cold start priced from it and the start-up
    code, out, _ = run_cli(capsys, *args)
    assert code == 0
    assert "#   ASSUMPTION to set: idle cost $0.1/sandbox-hour (assumed: set --idle-cost-per-hour" in out
    assert "#   cost from data: cold start $0.000222222: the sandbox's cost over its 8 s start-up" in out

    template = tmp_path / "template.yaml"
    template.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "extensions.agents.x-k8s.io/v1beta1",
                "kind": "SandboxTemplate",
                "metadata": {"name": "planner"},
                "spec": {
                    "podTemplate": {
                        "spec": {
                            "containers": [{"name": "agent", "resources": {"requests": {"cpu": "1500m", "memory": "3Gi"}}}],
                            "initContainers": [
                                {"name": "proxy", "restartPolicy": "Always", "resources": {"requests": {"cpu": "500m", "memory": "1024Mi"}}},
                                {"name": "setup", "resources": {"requests": {"cpu": "4"}}},  # runs before: not held
                            ],
                        }
                    }
                },
            }
        )
    )  # fmt: skip
    code, out, _ = run_cli(capsys, *args, "--sandbox-template", str(template), "--cpu-price", "0.05")
    assert code == 0
    # 2 vCPU x $0.05 + 4 GiB x $0.005 (the memory price assumed, and named)
    assert (
        "#   cost from data: idle $0.12/sandbox-hour: requests of template.yaml (2 vCPU x $0.05 + 4 GiB x $0.005)"
        in out
    )
    assert "#   ASSUMPTION to set: --memory-price $0.005/GiB-hour (assumed: set your price)" in out
    assert "--cpu-price" not in out.split("ASSUMPTION", 1)[1]

    # the agent's pods held a 1g.10gb MIG slice: priced as `analyze gpu` prices it ($0.57/h)
    write_runs(data_dir, [Run("gpu-agent", i * 600, 60, pod="vllm-0") for i in range(10)], writer_id="gpu-runs")
    write_mig_slice_of_vllm_0(data_dir)
    code, out, _ = run_cli(capsys, "--data", str(data_dir), "--agent", "gpu-agent")
    assert code == 0
    assert "ASSUMPTION" not in out
    assert "#   cost from data: idle $0.57/sandbox-hour: GPU slices of its pods in the dataset (median of 1 pods" in out


def test_what_the_console_keeps_gives_the_plan_of_the_cli(data_dir: Path) -> None:
    """The console's Agents page hands recommend_agent its every-agent idle analysis and every agent's GPU cost
    (kept per dataset state): the same Recommendation, to the YAML byte, as the CLI's own queries, for an
    agent with GPU slices and one without, over a window that cuts runs off."""
    gpu_runs = [Run("gpu-agent", i * 97, 60, pod="vllm-0") for i in range(40)]
    write_runs(data_dir, poisson("busy", 300, mean_gap_s=20, duration_s=45, seed=3) + gpu_runs)  # one file: ids unique
    write_mig_slice_of_vllm_0(data_dir)
    ds = open_dataset(data_dir)
    since = datetime.fromtimestamp(BASE_NS / 1e9 + 300, tz=UTC)
    kept_idle = {g.group: g for g in analyze_idle(ds, by="agent", since=since)}
    kept_gpu = agent_gpu_costs(ds, GpuPrices())
    assert set(kept_gpu) == {"gpu-agent"}
    everything = {g.group: g for g in analyze_idle(ds, by="agent")}
    assert [kept_idle[a].arrivals < everything[a].arrivals for a in ("busy", "gpu-agent")] == [True, True]
    for agent in ("busy", "gpu-agent"):
        plain = recommend_agent(ds, agent, since=since)
        kept = recommend_agent(ds, agent, since=since, idle=kept_idle[agent], gpu_costs=kept_gpu)
        assert kept == plain
        assert emit_yaml(kept) == emit_yaml(plain)
        assert (kept_idle[agent].scale_up_gaps, kept_idle[agent].arrivals_ns) == (None, None)  # kept as it was
    assert "GPU slices of its pods in the dataset" in emit_yaml(recommend_agent(ds, "gpu-agent", since=since))
    with pytest.raises(ValueError, match="idle analysis of 'busy'"):
        recommend_agent(ds, "gpu-agent", idle=kept_idle["busy"])
