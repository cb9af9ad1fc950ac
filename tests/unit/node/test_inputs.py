"""What a config provides to reward modules (``provided_inputs``) and the checks of ``rewards.reward_models``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from swarmrl.config import NodeConfig
from swarmrl.errors import ConfigError
from swarmrl.node.inputs import check_inputs, provided_inputs
from swarmrl.node.validate import check_semantics
from swarmrl.rewards.requirements import POLICY_SCORER


def _cfg(**sections: object) -> NodeConfig:
    return NodeConfig.model_validate(sections)


def test_the_default_config_provides_only_token_offsets() -> None:
    assert provided_inputs(_cfg()) == {"token_offsets", POLICY_SCORER}


def test_task_columns_completion_columns_and_reward_models_are_provided(tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        json.dumps({"question": "q", "answer": "a", "r": [1.0]})
        + "\n"
        + json.dumps({"question": "p", "answer": "b", "r": [0.0]})
        + "\n"
    )
    cfg = _cfg(
        tasks={
            "eval_questions": 0,
            "sources": [
                {"source": "code", "dataset": "tiny"},
                {
                    "source": "dataset",
                    "dataset": "rows",
                    "config": {"path": str(rows), "columns": {"refs": "r"}},
                },
            ],
        },
        rewards={
            "reward_models": [
                {"name": "rm_a", "path": str(tmp_path), "ref_key": "ref_rewards"},
                {"name": "rm_b", "path": str(tmp_path), "key": "score_b"},
            ]
        },
    )
    assert provided_inputs(cfg) == {
        "token_offsets",
        POLICY_SCORER,
        "tests",
        "code_prefix",
        "test_results",
        "refs",
        "rm_a",
        "ref_rewards",
        "score_b",
    }


def test_reward_model_fields_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="both write"):
        _cfg(rewards={"reward_models": [{"name": "a", "path": "x"}, {"name": "b", "path": "y", "key": "a"}]})
    with pytest.raises(ValidationError, match="completion"):
        _cfg(rewards={"reward_models": [{"name": "a", "path": "x", "template": "{prompt}"}]})
    with pytest.raises(ValidationError, match="ref_key"):
        _cfg(rewards={"reward_models": [{"name": "a", "path": "x", "ref_key": "a"}]})


def test_check_inputs_names_the_field(tmp_path: Path) -> None:
    missing = _cfg(rewards={"reward_models": [{"name": "rm", "path": str(tmp_path / "nope")}]})
    with pytest.raises(ConfigError) as err:
        check_semantics(missing)
    assert err.value.field == "rewards.reward_models[0].path"
    empty = _cfg(rewards={"reward_models": [{"name": "rm", "path": str(tmp_path)}]})
    with pytest.raises(ConfigError, match=r"config\.json") as err:
        check_inputs(empty)
    assert err.value.field == "rewards.reward_models[0].path"
    (tmp_path / "config.json").write_text("{}")
    check_inputs(empty)
    bad_ref = _cfg(
        rewards={
            "reward_models": [{"name": "rm", "path": str(tmp_path), "ref_key": "refs", "references": "gold"}]
        }
    )
    with pytest.raises(ConfigError, match="column 'gold'") as err:
        check_inputs(bad_ref)
    assert err.value.field == "rewards.reward_models[0].references"
    hub_id = _cfg(rewards={"reward_models": [{"name": "rm", "path": "org/some-rm"}]})
    check_inputs(hub_id)  # checked when loaded (the hub may be reachable where the node runs)
