"""Generate the Grafana dashboard ``dashboards/swarm.json`` from a short description of its panels.

Hand-edited Grafana JSON drifts (ids, grid positions, copy-pasted selectors); this script keeps every panel on
the same datasource, node filter and layout rules. Edit the panel list below, then run

    python deploy/grafana/build_dashboard.py            # rewrite dashboards/swarm.json
    python deploy/grafana/build_dashboard.py --check    # exit 1 if swarm.json is out of date (tests do this)

Metric names are the contract of docs/design.md section 7; ``tests/unit/deploy`` checks that every name used here
is exported by a node.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "swarmrl-prometheus"}
OUTPUT = Path(__file__).resolve().parent / "dashboards" / "swarm.json"
SEL = 'instance=~"$instance"'
RATE = "$__rate_interval"

Target = tuple[str, str]  # (PromQL expression, legend format)


@dataclass(frozen=True)
class Panel:
    """One panel: ``kind`` is 'timeseries' or 'stat'; ``width`` and ``height`` in grid units (24 wide)."""

    title: str
    targets: list[Target]
    unit: str = "short"
    kind: str = "timeseries"
    width: int = 8
    height: int = 8
    description: str = ""
    stack: bool = False
    min_value: float | None = None
    max_value: float | None = None
    thresholds: list[tuple[float | None, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Row:
    title: str
    panels: list[Panel]


def _quantiles(metric: str, by: str, qs: tuple[float, ...]) -> list[Target]:
    out: list[Target] = []
    for q in qs:
        expr = f"histogram_quantile({q}, sum by ({by}) (rate({metric}_bucket{{{SEL}}}[{RATE}])))"
        who = "{{instance}} " if "instance" in by else "swarm "
        out.append((expr, f"{who}p{round(q * 100)}"))
    return out


def layout() -> list[Row]:
    """The dashboard, top to bottom."""
    pct = [(None, "red"), (0.5, "orange"), (0.8, "green")]
    return [
        Row(
            "Overview",
            [
                Panel(
                    "Nodes up",
                    [(f"sum(up{{{SEL}}})", "up")],
                    kind="stat",
                    width=4,
                    height=4,
                    description="Scraped swarm nodes answering /metrics.",
                ),
                Panel(
                    "Swarm reward (total)",
                    [(f'avg(swarmrl_reward_mean{{module="total", {SEL}}})', "reward")],
                    kind="stat",
                    width=4,
                    height=4,
                    description="Mean over nodes of the last round's total reward.",
                ),
                Panel(
                    "Swarm accuracy",
                    [(f"avg(swarmrl_accuracy{{{SEL}}})", "accuracy")],
                    unit="percentunit",
                    kind="stat",
                    width=4,
                    height=4,
                    thresholds=pct,
                    description="Mean over nodes of the exact-match accuracy of own completions.",
                ),
                Panel(
                    "Swarm eval accuracy",
                    [(f"avg(swarmrl_eval_accuracy{{{SEL}}})", "eval")],
                    unit="percentunit",
                    kind="stat",
                    width=4,
                    height=4,
                    thresholds=pct,
                    description="Mean over nodes of greedy accuracy on held-out questions.",
                ),
                Panel(
                    "External training share",
                    [
                        (
                            f'sum(rate(swarmrl_train_groups_total{{origin="external", {SEL}}}[{RATE}]))'
                            f" / sum(rate(swarmrl_train_groups_total{{{SEL}}}[{RATE}]))",
                            "external",
                        )
                    ],
                    unit="percentunit",
                    kind="stat",
                    width=4,
                    height=4,
                    description="Fraction of trained groups that came from the swarm.",
                ),
                Panel(
                    "Oldest checkpoint",
                    [(f"max(time() - (swarmrl_checkpoint_timestamp_seconds{{{SEL}}} > 0))", "age")],
                    unit="s",
                    kind="stat",
                    width=4,
                    height=4,
                    thresholds=[(None, "green"), (1800, "orange"), (3600, "red")],
                    description="Age of the stalest durable checkpoint among the nodes.",
                ),
            ],
        ),
        Row(
            "Learning",
            [
                Panel(
                    "Reward (total) per node",
                    [
                        (f'swarmrl_reward_mean{{module="total", {SEL}}}', "{{instance}}"),
                        (f'avg(swarmrl_reward_mean{{module="total", {SEL}}})', "swarm mean"),
                    ],
                    description="Last round's mean combined reward (the training signal).",
                ),
                Panel(
                    "Reward by module",
                    [(f'swarmrl_reward_mean{{module!="total", {SEL}}}', "{{instance}} {{module}}")],
                    description="Per reward module, before weighting.",
                ),
                Panel(
                    "Exact-match accuracy",
                    [
                        (f"swarmrl_accuracy{{{SEL}}}", "{{instance}} train"),
                        (f"swarmrl_eval_accuracy{{{SEL}}}", "{{instance}} eval"),
                        (f"avg(swarmrl_eval_accuracy{{{SEL}}})", "swarm eval mean"),
                    ],
                    unit="percentunit",
                    min_value=0,
                    max_value=1,
                    description="Own completions (sampled) and held-out questions (greedy).",
                ),
                Panel(
                    "Trained groups by origin",
                    [
                        (
                            f"sum by (instance, origin) (rate(swarmrl_train_groups_total{{{SEL}}}[{RATE}]))",
                            "{{instance}} {{origin}}",
                        )
                    ],
                    unit="ops",
                    stack=True,
                    width=12,
                    description="Local vs external (swarm) groups per second entering the optimizer.",
                ),
                Panel(
                    "External share per node",
                    [
                        (
                            f'sum by (instance) (rate(swarmrl_train_groups_total{{origin="external", {SEL}}}[{RATE}]))'
                            f" / sum by (instance) (rate(swarmrl_train_groups_total{{{SEL}}}[{RATE}]))",
                            "{{instance}}",
                        )
                    ],
                    unit="percentunit",
                    min_value=0,
                    max_value=1,
                    width=12,
                ),
            ],
        ),
        Row(
            "Swarm traffic",
            [
                Panel(
                    "Rollouts published / received",
                    [
                        (
                            f"rate(swarmrl_rollouts_published_total{{{SEL}}}[{RATE}])",
                            "{{instance}} published",
                        ),
                        (f"rate(swarmrl_rollouts_received_total{{{SEL}}}[{RATE}])", "{{instance}} received"),
                    ],
                    unit="ops",
                    description="Groups per second sent to and accepted from the swarm.",
                ),
                Panel(
                    "Rejected by reason",
                    [
                        (
                            f"sum by (reason) (rate(swarmrl_rollouts_rejected_total{{{SEL}}}[{RATE}]))",
                            "{{reason}}",
                        )
                    ],
                    unit="ops",
                    stack=True,
                    description="Groups or envelopes dropped, by reason (signature, replay, task mismatch, ...).",
                ),
                Panel(
                    "Rejection ratio",
                    [
                        (
                            f"sum by (instance) (rate(swarmrl_rollouts_rejected_total{{{SEL}}}[{RATE}]))"
                            f" / (sum by (instance) (rate(swarmrl_rollouts_rejected_total{{{SEL}}}[{RATE}]))"
                            f" + sum by (instance) (rate(swarmrl_rollouts_received_total{{{SEL}}}[{RATE}])))",
                            "{{instance}}",
                        )
                    ],
                    unit="percentunit",
                    min_value=0,
                    max_value=1,
                ),
                Panel("Peers connected", [(f"swarmrl_peers_connected{{{SEL}}}", "{{instance}}")]),
                Panel("Pool (external groups waiting)", [(f"swarmrl_pool_groups{{{SEL}}}", "{{instance}}")]),
                Panel(
                    "Gossip messages",
                    [
                        (f"rate(swarmrl_gossip_messages_sent_total{{{SEL}}}[{RATE}])", "{{instance}} sent"),
                        (
                            f"rate(swarmrl_gossip_messages_received_total{{{SEL}}}[{RATE}])",
                            "{{instance}} received",
                        ),
                    ],
                    unit="ops",
                ),
                Panel(
                    "Gossip delivery latency (swarm)",
                    _quantiles("swarmrl_gossip_delivery_seconds", "le", (0.5, 0.95, 0.99)),
                    unit="s",
                    width=12,
                    description="Sender timestamp to acceptance, all nodes.",
                ),
                Panel(
                    "Gossip delivery latency p95 per node",
                    _quantiles("swarmrl_gossip_delivery_seconds", "le, instance", (0.95,)),
                    unit="s",
                    width=12,
                ),
            ],
        ),
        Row(
            "Throughput",
            [
                Panel(
                    "Generation tokens/s",
                    [(f"rate(swarmrl_generation_tokens_total{{{SEL}}}[{RATE}])", "{{instance}}")],
                    unit="short",
                ),
                Panel(
                    "Train step time",
                    [
                        *_quantiles("swarmrl_train_step_seconds", "le, instance", (0.5, 0.95)),
                        (
                            f"rate(swarmrl_train_step_seconds_sum{{{SEL}}}[{RATE}])"
                            f" / rate(swarmrl_train_step_seconds_count{{{SEL}}}[{RATE}])",
                            "{{instance}} mean",
                        ),
                    ],
                    unit="s",
                    description="Wall time of one optimizer step.",
                ),
                Panel(
                    "Generation time per round",
                    [*_quantiles("swarmrl_generation_seconds", "le, instance", (0.5,))],
                    unit="s",
                ),
                Panel("Round", [(f"swarmrl_round{{{SEL}}}", "{{instance}}")], width=12),
                Panel(
                    "Policy version (optimizer steps)",
                    [(f"swarmrl_policy_version{{{SEL}}}", "{{instance}}")],
                    width=12,
                ),
            ],
        ),
        Row(
            "Optimization",
            [
                Panel("Loss", [(f"swarmrl_train_loss{{{SEL}}}", "{{instance}}")], width=6),
                Panel("KL to reference", [(f"swarmrl_train_kl{{{SEL}}}", "{{instance}}")], width=6),
                Panel(
                    "Clip fraction",
                    [(f"swarmrl_train_clip_fraction{{{SEL}}}", "{{instance}} {{origin}}")],
                    unit="percentunit",
                    width=6,
                ),
                Panel(
                    "Zero-advantage groups",
                    [(f"swarmrl_zero_advantage_fraction{{{SEL}}}", "{{instance}}")],
                    unit="percentunit",
                    width=6,
                    description="Own groups whose completions all scored the same (no learning signal).",
                ),
            ],
        ),
        Row(
            "Health",
            [
                Panel(
                    "Checkpoint age",
                    [(f"time() - (swarmrl_checkpoint_timestamp_seconds{{{SEL}}} > 0)", "{{instance}}")],
                    unit="s",
                    width=12,
                    thresholds=[(None, "green"), (1800, "orange"), (3600, "red")],
                ),
                Panel(
                    "Up (scrape) and round loop alive",
                    [(f"up{{{SEL}}}", "{{instance}} scrape"), (f"swarmrl_up{{{SEL}}}", "{{instance}} loop")],
                    width=12,
                    min_value=0,
                    max_value=1,
                ),
            ],
        ),
    ]


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    steps = [{"color": color, "value": value} for value, color in (panel.thresholds or [(None, "green")])]
    defaults: dict[str, Any] = {"unit": panel.unit, "thresholds": {"mode": "absolute", "steps": steps}}
    if panel.min_value is not None:
        defaults["min"] = panel.min_value
    if panel.max_value is not None:
        defaults["max"] = panel.max_value
    out: dict[str, Any] = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "targets": [
            {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": chr(ord("A") + i)}
            for i, (expr, legend) in enumerate(panel.targets)
        ],
    }
    if panel.kind == "stat":
        defaults["color"] = {"mode": "thresholds"}
        out["options"] = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "textMode": "value",
        }
    else:
        defaults["color"] = {"mode": "palette-classic"}
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 15 if panel.stack else 0,
            "showPoints": "never",
            "spanNulls": True,
            "stacking": {"mode": "normal" if panel.stack else "none", "group": "A"},
        }
        out["options"] = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    out["fieldConfig"] = {"defaults": defaults, "overrides": []}
    return out


def build() -> dict[str, Any]:
    """The dashboard as a JSON-ready dict (deterministic: same input, same bytes)."""
    panels: list[dict[str, Any]] = []
    next_id, y = 1, 0
    for row in layout():
        panels.append(
            {
                "id": next_id,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        next_id, y = next_id + 1, y + 1
        x, line_height = 0, 0
        for panel in row.panels:
            if x + panel.width > 24:
                x, y, line_height = 0, y + line_height, 0
            panels.append(_panel_json(panel, next_id, x, y))
            next_id += 1
            x += panel.width
            line_height = max(line_height, panel.height)
        y += line_height
    instance_query = "label_values(swarmrl_round, instance)"
    return {
        "uid": "swarmrl-swarm",
        "title": "swarmrl / Swarm",
        "description": "Learning, traffic and health of every swarm-node scraped by this Prometheus.",
        "tags": ["swarmrl"],
        "editable": True,
        "graphTooltip": 1,
        "refresh": "10s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "browser",
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "templating": {
            "list": [
                {
                    "name": "instance",
                    "label": "node",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "definition": instance_query,
                    "query": {"query": instance_query, "refId": "instance"},
                    "refresh": 2,
                    "multi": True,
                    "includeAll": True,
                    # No allValue: "All" expands to the node list, so up{} never picks other jobs.
                    "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                    "sort": 1,
                }
            ]
        },
        "panels": panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Generate deploy/grafana/dashboards/swarm.json")
    parser.add_argument("--check", action="store_true", help="fail if the file differs from the generator")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.is_file() else ""
        if current != text:
            print(f"{OUTPUT} is out of date: run python deploy/grafana/build_dashboard.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
