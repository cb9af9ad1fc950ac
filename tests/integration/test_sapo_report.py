"""The experiment's statistics: moving average, paired verdicts, measures of a run, collapse detection."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from swarmrl.apps.experiment import (
    Arm,
    Regime,
    Settings,
    default_arm,
    default_arms,
    node_config,
    settings_from_flags,
    warmstart_mix,
)
from swarmrl.apps.experiment_report import (
    _paired,
    budget_mean,
    compute_fair,
    moving_average,
    run_summary,
    summarise,
    tokens_to_reach,
    verdict,
)
from swarmrl.config import NodeConfig
from swarmrl.errors import ConfigError, SwarmRLError


def test_moving_average_is_trailing() -> None:
    assert moving_average([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]


def test_paired_verdicts_need_more_than_noise() -> None:
    base = [1.0, 1.0, 1.0, 1.0, 1.0]
    assert verdict(_paired([2.0, 2.1, 1.9, 2.0, 2.05], base)) == "better"
    assert verdict(_paired([0.5, 0.6, 0.4, 0.5, 0.55], base)) == "worse"
    assert verdict(_paired([1.5, 0.5, 1.4, 0.6, 1.0], base)) == "tie"
    p = _paired([2.0, 3.0], [1.0, 1.0])
    assert p["ratio_mean"] == 2.5 and p["wins"] == 2


def _node(name: str, rewards: list[float], greedy: float) -> dict[str, object]:
    n = len(rewards)
    return {
        "name": name,
        "eval_accuracy": greedy,
        "reward_mean": rewards,
        "trained_reward_mean": [r + 0.1 for r in rewards],
        "zero_variance_fraction": [0.5] * n,
        "local_groups": [4] * n,
        "external_groups": [4] * n,
    }


def test_run_summary_measures_and_collapse() -> None:
    nodes = [_node("n0", [0.2, 0.4, 0.4, 0.4], 0.5), _node("n1", [0.2, 0.4, 0.4, 0.4], 0.05)]
    s = run_summary(nodes, window=2)
    assert s["cumulative"] == pytest.approx(2.8)
    assert s["paper_cumulative"] == pytest.approx(3.6)
    assert [n["collapsed"] for n in s["nodes"]] == [False, True]
    assert s["oscillation"] == pytest.approx(0.0)


def test_summarise_pairs_by_seed() -> None:
    arms = [
        {"name": "2/0", "strategy": "nonzero_advantage_uniform", "filter_local": False},
        {"name": "adaptive", "strategy": "adaptive", "filter_local": False},
    ]
    units = [
        {
            "regime": "r",
            "seed": s,
            "arms": {
                "2/0": {"nodes": [_node("n0", [0.1 * (s + 1)] * 4, 0.3)]},
                "adaptive": {"nodes": [_node("n0", [0.2 * (s + 1)] * 4, 0.3)]},
            },
        }
        for s in range(3)
    ]
    doc = {"settings": {"arms": arms, "regimes": [{"name": "r"}], "ma_window": 2}, "units": units}
    out = summarise(doc)["r"]
    assert out["arms"]["adaptive"]["paired_to_baseline"]["cumulative"]["ratio_mean"] == pytest.approx(2.0)
    assert out["checks"]["adaptive_vs_baseline"] == "better"
    assert out["checks"]["best_fixed_split"] == "2/0"


def test_configs_differ_only_in_sampling_across_arms(tmp_path: Path) -> None:
    s = Settings(out=tmp_path, arms=default_arms(8), regimes=(Regime("sparse", 4, 10),))
    cfgs = [node_config(s, s.regimes[0], a, 3, 1, tmp_path / "n1", {"transport": "memory"}) for a in s.arms]
    for c in cfgs:
        NodeConfig.model_validate(c)  # every arm is a valid node config
        assert {k: v for k, v in c.items() if k != "sampling"} == {
            k: v for k, v in cfgs[0].items() if k != "sampling"
        }
    assert [a.name for a in s.arms][:2] == ["8/0", "default"]
    assert math.isclose(sum(x["weight"] for x in warmstart_mix(2, 0.7)), 1.0)
    assert warmstart_mix(2, 0.7)[2] == {"dataset": "mul", "weight": 0.7}
    with pytest.raises(ConfigError):
        default_arms(7)
    assert Arm("x", 1, 1).strategy == "nonzero_advantage_uniform"


def test_flags_choose_rounds_arms_and_reject_bad_input(tmp_path: Path) -> None:
    full = settings_from_flags(tmp_path, 40, None, 5, 4, 2, None, "memory", True, False)
    assert [r.name for r in full.regimes] == ["sparse", "dense", "hard"]
    assert [a.name for a in full.arms][:2] == ["8/0", "default"] and len(full.arms) >= 6
    assert 30 <= full.rounds <= 200  # the budget flag picks the rounds
    half = settings_from_flags(tmp_path, 20, None, 5, 4, 2, None, "memory", True, False)
    assert half.rounds < full.rounds
    sub = settings_from_flags(tmp_path, 40, 12, 3, 4, 1, ["dense"], "libp2p", False, False, ["adaptive"])
    assert [a.name for a in sub.arms] == ["8/0", "default", "adaptive"] and sub.rounds == 12
    assert sub.transport == "libp2p" and not sub.fill_with_local and sub.seeds == (0, 1, 2)
    for bad in (
        {"transport": "grpc"},
        {"regimes": ["medium"]},
        {"arms": ["3/5"]},
        {"rounds": 1},
    ):
        args: dict[str, Any] = {
            "out": tmp_path,
            "minutes": 40,
            "rounds": None,
            "seeds": 5,
            "nodes": 4,
            "workers": 2,
            "regimes": None,
            "transport": "memory",
            "fill": True,
            "smoke": False,
            "arms": None,
        }
        args.update(bad)
        with pytest.raises(ConfigError):
            settings_from_flags(**args)
    with pytest.raises(SwarmRLError):  # too few minutes for a meaningful run
        settings_from_flags(tmp_path, 0.5, None, 5, 4, 2, None, "memory", True, False)


def test_warmstart_sources_enter_the_model_fingerprint_only_when_set() -> None:
    import hashlib
    import json

    from swarmrl.trainer.policy import embedded_fingerprint

    plain = NodeConfig()
    legacy = json.dumps(
        {
            "tiny": plain.model.tiny.model_dump(exclude={"warmstart_sources"}),
            "tasks": plain.tasks.model_dump(mode="json"),
            "seed": 3,
            "v": 1,
        },
        sort_keys=True,
    )
    # unset: the digest of caches built before the field existed stays valid
    assert (
        embedded_fingerprint(plain.model, plain.tasks, 3) == hashlib.sha256(legacy.encode()).hexdigest()[:12]
    )
    focused = NodeConfig.model_validate({"model": {"tiny": {"warmstart_sources": warmstart_mix(2, 0.7)}}})
    assert embedded_fingerprint(focused.model, focused.tasks, 3) != embedded_fingerprint(
        plain.model, plain.tasks, 3
    )


def _fair_node(rewards: list[float], tokens: list[float], seconds: list[float]) -> dict[str, Any]:
    n = _node("n0", rewards, 0.3)
    n.update(generation_tokens=tokens, round_seconds=seconds)
    return n


def test_budget_mean_and_tokens_to_reach_on_hand_numbers() -> None:
    # 2 tokens at reward 0.0, then 2 at 1.0, then 2 at 0.5: over the first 3 tokens (0+0+1)/3
    assert budget_mean([0.0, 1.0, 0.5], [2, 2, 2], 3) == pytest.approx(1 / 3)
    assert budget_mean([0.0, 1.0, 0.5], [2, 2, 2], 6) == pytest.approx(0.5)
    assert math.isnan(budget_mean([1.0], [1], 0))
    # moving average (window 1) reaches 0.5 at the second round: 4 + 4 tokens of a baseline's 16
    assert tokens_to_reach([0.1, 0.6, 0.7], [4, 4, 4], 0.5, 1, 16) == pytest.approx(0.5)
    assert tokens_to_reach([0.1, 0.2], [4, 4], 0.5, 1, 16) is None


def test_compute_fair_uses_the_smallest_budget_of_any_arm() -> None:
    # The sharing arm generates half the tokens per round and learns as fast per round: per token it is
    # ahead (its first 8 tokens are spent at rewards 0.0, 0.5, 1.0, 1.0; the baseline's at 0.0, 0.5).
    runs = {
        "8/0": {"nodes": [_fair_node([0.0, 0.5, 1.0, 1.0], [4, 4, 4, 4], [1, 1, 1, 1])]},
        "4/4": {"nodes": [_fair_node([0.0, 0.5, 1.0, 1.0], [2, 2, 2, 2], [1, 1, 1, 1])]},
    }
    fair = compute_fair(runs, "8/0", window=1)
    assert fair["8/0"]["reward_per_token"] == pytest.approx(0.25)
    assert fair["4/4"]["reward_per_token"] == pytest.approx(0.625)
    assert fair["8/0"]["reward_per_second"] == pytest.approx(fair["4/4"]["reward_per_second"])
    # baseline final MA (window 1, last round) = 1.0; the 4/4 arm reaches it after 6 of the baseline's 16
    assert fair["4/4"]["tokens_to_reach"] == pytest.approx(6 / 16)
    assert fair["8/0"]["tokens_to_reach"] == pytest.approx(12 / 16)


def test_summary_pairs_every_measure_for_the_default_arm() -> None:
    arms = [
        {"name": "8/0", "strategy": "nonzero_advantage_uniform", "filter_local": False},
        {"name": "default", "strategy": "nonzero_advantage_uniform", "filter_local": False},
    ]
    units = [
        {
            "regime": "r",
            "seed": s,
            "arms": {
                "8/0": {"nodes": [_fair_node([0.1 * (s + 1)] * 4, [4] * 4, [1] * 4)]},
                "default": {"nodes": [_fair_node([0.2 * (s + 1)] * 4, [4] * 4, [1] * 4)]},
            },
        }
        for s in range(3)
    ]
    doc = {"settings": {"arms": arms, "regimes": [{"name": "r"}], "ma_window": 2}, "units": units}
    row = summarise(doc)["r"]["arms"]["default"]
    for m in ("cumulative", "reward_per_token", "reward_per_second"):
        p = row["paired_to_baseline"][m]
        assert p["ratio_mean"] == pytest.approx(2.0) and p["diff_se"] > 0 and p["n"] == 3
    assert row["paired_to_baseline"]["eval_accuracy"]["diff_mean"] == pytest.approx(0.0)


def test_default_arm_is_the_shipped_sampling_config() -> None:
    from swarmrl.config.swarm import SamplingSection

    shipped = SamplingSection().model_dump()
    arm = default_arm().sampling(fill_with_local=not shipped["fill_with_local"])
    assert {k: shipped[k] for k in arm} == arm
    assert default_arms()[1].name == "default"


def test_committed_results_ran_the_shipped_default_in_every_regime() -> None:
    """docs/sapo-results.json is the run behind the documented defaults: its `default` arm is exactly the
    sampling section a node ships with, and it is summarised in every regime."""
    import json

    from swarmrl.config.swarm import SamplingSection
    from tests.nodeutil import REPO

    doc = json.loads((REPO / "docs" / "sapo-results.json").read_text())
    shipped = SamplingSection().model_dump()
    (arm,) = [a for a in doc["settings"]["arms"] if a["name"] == "default"]
    ran = Arm(**{k: v for k, v in arm.items()}).sampling(doc["settings"]["fill_with_local"])
    assert {k: shipped[k] for k in ran} == ran
    for regime in doc["summary"].values():
        assert set(regime["arms"]["default"]["paired_to_baseline"]) >= {
            "cumulative",
            "reward_per_token",
            "reward_per_second",
        }
