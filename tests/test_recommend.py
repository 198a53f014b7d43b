"""`analyze recommend`: settings chosen exactly on constructed arrival sequences; the YAML parses and
validates against our JSON schemas of the KEDA ScaledObject and SandboxWarmPool CRDs."""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import yaml
from idle_datasets import Run, bursty, periodic, write_runs

from analyzer.cli import main
from analyzer.dataset import AnalyzerError, open_dataset
from analyzer.idle import analyze_idle
from analyzer.recommend import Costs, emit_yaml, k8s_name, recommend

SCHEMAS = {
    "ScaledObject": "keda_scaledobject.json",
    "SandboxWarmPool": "sandboxwarmpool.json",
}


def schema(kind: str) -> dict:
    return json.loads(resources.files("analyzer").joinpath("schemas", SCHEMAS[kind]).read_text())


def validate(doc: dict) -> None:
    jsonschema.Draft202012Validator(schema(doc["kind"])).validate(doc)


def parse(text: str) -> dict[str, dict]:
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    for doc in docs:
        validate(doc)
    return {doc["kind"]: doc for doc in docs}


def group(data_dir: Path, agent: str, **kw):
    (found,) = analyze_idle(open_dataset(data_dir), group=agent, with_scale_up_gaps=True, **kw)
    return found


def test_periodic_agent_scales_to_zero_with_the_cheapest_cooldown(data_dir: Path) -> None:
    # 10 runs every 600 s lasting 60 s: every idle gap is 540 s
    write_runs(data_dir, periodic("planner", 10, every_s=600, duration_s=60))
    rec = recommend(group(data_dir, "planner"), 0.99, Costs(idle_cost_per_hour=0.1, cold_start_cost=0.01))
    # warm floor: size 0 misses every claim; size 1 catches all for 24 h x $0.1
    assert (rec.pool.setting, rec.pool.warm_hit, rec.pool.cost_per_day) == (1, 1.0, pytest.approx(2.4))
    # cooldowns >= 540 s catch every arrival; each costs 540 idle s per gap, 144 gaps/day: the smallest wins
    assert (rec.cooldown.setting, rec.cooldown.warm_hit) == (600, 1.0)
    assert rec.cooldown.cost_per_day == pytest.approx(144 * 540 / 3600 * 0.1)
    assert rec.scale_to_zero is True
    # never two runs at once: nothing to measure for the 1..N range, the HPA default stays
    assert (rec.warm_floor, rec.max_replicas, rec.polling_interval_s) == (0, 1, 8)
    assert (rec.scale_down, rec.stabilization_window_s) == (None, 300)

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
        "spec": {"replicas": 1, "sandboxTemplateRef": {"name": "planner"}},
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
                "warmFloor": "0",
                "targetPerReplica": "1",
                "namespace": "agents",
            },
        }
    ]
    # the numbers behind each choice are in the comments
    assert "# cooldownPeriod 600 s: cold-start fraction P(idle gap > cooldown) 0.00%" in text
    assert "# scale to zero, cooldownPeriod 600 s: warm-hit 100.00%, $2.16/day (reaches the target)" in text
    assert "# warm floor 1 (replayed claims): warm-hit 100.00%, $2.40/day (reaches the target)" in text
    assert "# empty-pool fraction by size: 0: 100.00%, 1: 0.00%" in text
    assert "# scaleDown.stabilizationWindowSeconds 300 s (the 1..N range): never two runs at once" in text
    assert "#   url: http://agentmeter.obs:4318/v1/demand?agent=planner&warmFloor=0, valueLocation: value" in text


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


def test_rare_agent_needs_a_warm_floor(data_dir: Path) -> None:
    # one run every 2 days: every gap outlasts the longest candidate cooldown (1 day)
    write_runs(data_dir, periodic("nightly", 5, every_s=172_800, duration_s=60))
    rec = recommend(group(data_dir, "nightly"), 0.99, Costs(0.1, 0.01))
    assert (rec.cooldown.meets_target, rec.cooldown.warm_hit) == (False, 0.0)
    assert (rec.pool.setting, rec.pool.meets_target) == (1, True)
    assert (rec.scale_to_zero, rec.warm_floor, rec.max_replicas) == (False, 1, 2)
    docs = parse(emit_yaml(rec, "keda"))
    assert set(docs) == {"ScaledObject"}
    spec = docs["ScaledObject"]["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "nightly"}
    assert (spec["minReplicaCount"], spec["triggers"][0]["metadata"]["warmFloor"]) == (1, "1")
    assert "namespace" not in docs["ScaledObject"]["metadata"]


def test_pool_size_minimises_idle_plus_cold_start_cost(data_dir: Path) -> None:
    # 3 bursts of 4 claims 5 s apart; 20 s start-up: pool sizes 0..4 find the pool empty 12, 9, 6, 3, 0 times
    write_runs(data_dir, bursty("burst", 3, 4, inner_gap_s=5, pause_s=3600, duration_s=10))
    g = group(data_dir, "burst", cold_start_s=20)
    assert [r.empty_claims for r in g.warm_pool] == [12, 9, 6, 3, 0]
    per_day = 11 / (7215 / 86_400)
    cheap_cold = recommend(g, 0.5, Costs(idle_cost_per_hour=0.1, cold_start_cost=0.0))
    assert (cheap_cold.pool.setting, cheap_cold.pool.warm_hit) == (2, 0.5)  # smallest size at the target
    dear_cold = recommend(g, 0.5, Costs(idle_cost_per_hour=0.1, cold_start_cost=100.0))
    assert dear_cold.pool.setting == 4  # no cold starts beats 6/12 * per_day * $100
    assert dear_cold.pool.cost_per_day == pytest.approx(4 * 24 * 0.1)
    size2 = 2 * 24 * 0.1 + 0.5 * per_day * 100.0
    assert size2 > dear_cold.pool.cost_per_day
    # unreachable target: the pool size with the best warm-hit rate, marked as below the target
    capped = group(data_dir, "burst", cold_start_s=20, max_pool_size=2)
    best = recommend(capped, 0.99, Costs(0.1, 0.01))
    assert (best.pool.setting, best.pool.meets_target) == (2, False)
    assert "BELOW the target" in emit_yaml(best, "warmpool")


def test_schemas_reject_what_the_crds_reject(data_dir: Path) -> None:
    write_runs(data_dir, periodic("planner", 10, every_s=600, duration_s=60))
    docs = parse(emit_yaml(recommend(group(data_dir, "planner"), 0.99, Costs(0.1, 0.01))))
    bad_window = copy.deepcopy(docs["ScaledObject"])
    bad_window["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"][
        "stabilizationWindowSeconds"
    ] = 4000  # HPA maximum is 3600
    no_address = copy.deepcopy(docs["ScaledObject"])
    del no_address["spec"]["triggers"][0]["metadata"]["scalerAddress"]
    negative_pool = copy.deepcopy(docs["SandboxWarmPool"])
    negative_pool["spec"]["replicas"] = -1
    no_template = copy.deepcopy(docs["SandboxWarmPool"])
    del no_template["spec"]["sandboxTemplateRef"]
    for doc in (bad_window, no_address, negative_pool, no_template):
        with pytest.raises(jsonschema.ValidationError):
            validate(doc)


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
    (without_gaps,) = analyze_idle(open_dataset(data_dir), group="p")
    with pytest.raises(ValueError, match="with_scale_up_gaps=True"):
        recommend(without_gaps, 0.99, Costs(0.1, 0.01))


def test_cli(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_runs(data_dir, periodic("planner", 10, every_s=600, duration_s=60, namespace="team-b"))
    args = ["recommend", "--data", str(data_dir), "--agent", "planner"]
    assert main([*args, "--namespace", "team-b", "--cold-start", "30s", "--template", "py-sandbox"]) == 0
    docs = parse(capsys.readouterr().out)
    assert docs["SandboxWarmPool"]["spec"]["sandboxTemplateRef"] == {"name": "py-sandbox"}
    assert docs["ScaledObject"]["spec"]["pollingInterval"] == 30
    assert docs["ScaledObject"]["metadata"]["namespace"] == "team-b"
    assert main([*args, "--emit", "warmpool"]) == 0
    assert set(parse(capsys.readouterr().out)) == {"SandboxWarmPool"}
    assert main([*args, "--namespace", "elsewhere"]) == 2
    assert main(["recommend", "--data", str(data_dir), "--agent", "nobody"]) == 2
    assert main([*args, "--target-warm-hit", "1.5"]) == 2
    assert main([*args, "--emit", "helm"]) == 2
    err = capsys.readouterr().err
    assert "no runs of agent 'planner' in namespace elsewhere" in err
    assert "no runs of agent 'nobody'" in err
    assert "Traceback" not in err
