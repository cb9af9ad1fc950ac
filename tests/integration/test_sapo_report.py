"""The experiment's statistics: moving average, paired verdicts, measures of a run, collapse detection."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from swarmrl.config import NodeConfig
from swarmrl.errors import ConfigError, SwarmRLError
from swarmrl.node.experiment import (
    Arm,
    Regime,
    Settings,
    default_arms,
    node_config,
    settings_from_flags,
    warmstart_mix,
)
from swarmrl.node.experiment_report import _paired, moving_average, run_summary, summarise, verdict


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
    assert out["arms"]["adaptive"]["paired_to_baseline"]["ratio_mean"] == pytest.approx(2.0)
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
    assert [a.name for a in s.arms][:2] == ["8/0", "8/0 filtered"]
    assert math.isclose(sum(x["weight"] for x in warmstart_mix(2, 0.7)), 1.0)
    assert warmstart_mix(2, 0.7)[2] == {"dataset": "mul", "weight": 0.7}
    with pytest.raises(ConfigError):
        default_arms(7)
    assert Arm("x", 1, 1).strategy == "nonzero_advantage_uniform"


def test_flags_choose_rounds_arms_and_reject_bad_input(tmp_path: Path) -> None:
    full = settings_from_flags(tmp_path, 40, None, 5, 4, 2, None, "memory", True, False)
    assert [r.name for r in full.regimes] == ["sparse", "dense"] and len(full.arms) == 8
    assert 30 <= full.rounds <= 200  # the budget flag picks the rounds
    half = settings_from_flags(tmp_path, 20, None, 5, 4, 2, None, "memory", True, False)
    assert half.rounds < full.rounds
    sub = settings_from_flags(tmp_path, 40, 12, 3, 4, 1, ["dense"], "libp2p", False, False, ["adaptive"])
    assert [a.name for a in sub.arms] == ["8/0", "adaptive"] and sub.rounds == 12
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
