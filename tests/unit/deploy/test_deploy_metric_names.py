"""Every metric a dashboard panel, recording rule or alert queries is one a node exports.

The set of exported names comes from the ``node_exposition`` fixture (conftest.py): the /metrics scrape of a
real ``swarm-node run`` process (tiny model, loopback, free port) after its first round, stopped when this
module is done. Labelled families the node has not touched yet (no rejection so far) count by their type.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from conftest import DEPLOY, exported_sample_names
from prometheus_client.parser import text_string_to_metric_families

from tests.nodeutil import metric_value

# A metric name token: not preceded by a name character or ':' (that would be part of a recording rule).
_METRIC = re.compile(r"(?<![\w:])(swarmrl_[A-Za-z0-9_]+)")
_RECORDED = re.compile(r"(?<![\w:])(swarmrl:[A-Za-z0-9_:]+)")


def _rules() -> list[dict[str, Any]]:
    data = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text(encoding="utf-8"))
    return [rule for group in data["groups"] for rule in group["rules"]]


def _dashboard_queries() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "swarm.json").read_text(encoding="utf-8"))
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        queries.append(query["query"] if isinstance(query, dict) else str(query))
    return queries


def _rule_queries() -> list[str]:
    return [str(rule["expr"]) for rule in _rules()]


def test_queries_were_found() -> None:
    assert len(_dashboard_queries()) >= 20
    assert len(_rule_queries()) >= 10


@pytest.mark.parametrize("source", ["dashboard", "rules"])
def test_every_queried_metric_is_exported(source: str, exported_names: set[str]) -> None:
    queries = _dashboard_queries() if source == "dashboard" else _rule_queries()
    used = {name for q in queries for name in _METRIC.findall(q)}
    assert used, "no swarmrl_* metric found in the queries"
    missing = sorted(used - exported_names)
    assert not missing, f"{source} queries metrics no node exports: {missing}"


@pytest.mark.parametrize("source", ["dashboard", "rules"])
def test_every_recording_rule_used_is_defined(source: str) -> None:
    defined = {str(rule["record"]) for rule in _rules() if "record" in rule}
    queries = _dashboard_queries() if source == "dashboard" else _rule_queries()
    used = {name for q in queries for name in _RECORDED.findall(q)}
    assert not used - defined, f"undefined recording rules: {sorted(used - defined)}"


def test_dashboard_covers_the_design_metrics() -> None:
    """The dashboard shows every metric the operations brief lists (docs/design.md section 7)."""
    text = " ".join(_dashboard_queries())
    for name in [
        'swarmrl_reward_mean{module="total"',
        "swarmrl_accuracy",
        "swarmrl_eval_accuracy",
        "swarmrl_train_groups_total",
        "swarmrl_rollouts_published_total",
        "swarmrl_rollouts_received_total",
        "swarmrl_rollouts_rejected_total",
        "swarmrl_peers_connected",
        "swarmrl_gossip_delivery_seconds_bucket",
        "swarmrl_generation_tokens_total",
        "swarmrl_train_step_seconds_bucket",
        "swarmrl_train_loss",
        "swarmrl_train_kl",
        "swarmrl_train_clip_fraction",
        "swarmrl_checkpoint_timestamp_seconds",
    ]:
        assert name in text, f"dashboard has no query on {name}"


def test_the_name_check_catches_an_unknown_metric(exported_names: set[str]) -> None:
    """Guard against a vacuous check: a misspelled metric is not in the exported set."""
    assert "swarmrl_reward_mean" in exported_names
    assert "swarmrl_rollouts_rejected_total" in exported_names
    assert "swarmrl_gossip_delivery_seconds_bucket" in exported_names
    assert "swarmrl_rewards_mean" not in exported_names
    assert "swarmrl_rollouts_rejected" not in exported_names  # counters are queried with _total


def test_untouched_labelled_families_still_count_as_exported() -> None:
    """A real node that has not rejected anything yet still exports the rejection counter's name."""
    text = (
        "# HELP swarmrl_rollouts_rejected_total dropped\n# TYPE swarmrl_rollouts_rejected_total counter\n"
        "# HELP swarmrl_train_step_seconds step\n# TYPE swarmrl_train_step_seconds histogram\n"
    )
    names = exported_sample_names(text)
    assert {"swarmrl_rollouts_rejected_total", "swarmrl_train_step_seconds_bucket"} <= names


def test_the_names_come_from_a_running_node(node_exposition: str) -> None:
    """The exposition is a live node's: it is up, has finished a round, trained and set per-round values."""
    assert metric_value(node_exposition, "swarmrl_up") == 1.0
    assert (metric_value(node_exposition, "swarmrl_round") or 0) >= 1
    assert (metric_value(node_exposition, "swarmrl_train_groups_total", '{origin="local"}') or 0) > 0
    modules = {
        sample.labels["module"]
        for family in text_string_to_metric_families(node_exposition)
        for sample in family.samples
        if sample.name == "swarmrl_reward_mean"
    }
    assert "total" in modules and len(modules) >= 2, modules  # the total and each reward module
