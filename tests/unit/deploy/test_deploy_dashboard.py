"""The Grafana dashboard is generated, current, well-formed and laid out without overlaps."""

from __future__ import annotations

import importlib.util
import json
import sys
from types import ModuleType
from typing import Any

from conftest import DEPLOY

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "swarm.json"


def _generator() -> ModuleType:
    path = DEPLOY / "grafana" / "build_dashboard.py"
    spec = importlib.util.spec_from_file_location("swarmrl_build_dashboard", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


def _dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_swarm_json_is_what_the_generator_writes() -> None:
    assert _generator().render() == DASHBOARD.read_text(encoding="utf-8"), (
        "deploy/grafana/dashboards/swarm.json is stale: run python deploy/grafana/build_dashboard.py"
    )


def test_ids_refids_and_datasources() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] and dashboard["title"]
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["type"] in {"timeseries", "stat"}
        assert panel["datasource"]["uid"] == "swarmrl-prometheus"
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["expr"].count("(") == target["expr"].count(")"), panel["title"]
            assert target["expr"].count("{") == target["expr"].count("}"), panel["title"]


def test_panels_do_not_overlap_and_fit_the_grid() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in _dashboard()["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {
            (x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & taken, f"panel {panel['title']!r} overlaps another"
        taken |= cells


def test_node_filter_applies_to_every_per_node_query() -> None:
    dashboard = _dashboard()
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"instance"}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert 'instance=~"$instance"' in target["expr"], (panel["title"], target["expr"])


def test_dashboard_has_the_required_sections() -> None:
    titles = " | ".join(p["title"] for p in _dashboard()["panels"]).lower()
    for needle in [
        "reward",
        "accuracy",
        "origin",
        "published",
        "rejected by reason",
        "peers",
        "latency",
        "tokens/s",
        "train step",
        "loss",
        "kl",
        "clip",
        "checkpoint age",
    ]:
        assert needle in titles, f"no panel about {needle!r}"
