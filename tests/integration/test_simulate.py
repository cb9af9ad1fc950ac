"""``swarm-node simulate``: the per-node ingress bound at N = 200 (real Swarm per node, simulated links)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from swarmrl.apps.simulate import SimSettings, Simulation, simulate


@pytest.mark.slow
def test_ingress_stays_within_the_budget_at_200_nodes() -> None:
    s = SimSettings(nodes=200, rounds=3, warmup=1, churn=0.02, loss=0.01, seed=7)
    sim = Simulation(s)
    import asyncio

    result = asyncio.run(sim.run())
    bound = result["bound"]
    assert bound["senders"] == 8 and bound["groups_per_round"] == 32
    assert len(sim.rows) >= 2 * 190  # every online node, every measured round
    for row in sim.rows:  # each node, each round: within its own budget, whatever N is
        assert row["envelopes"] <= s.ingress_senders
        assert row["bytes"] <= bound["bytes_per_round"]
        assert row["accepted"] <= s.ingress_groups_per_round
        # pool memory: groups live max_age_rounds (2) + 1 rounds, each round brings at most the budget
        assert row["pool"] <= 3 * s.ingress_groups_per_round
    # the budget is used (not an empty swarm), and fairly: every sender gets selected
    assert result["accepted_groups_per_round"]["mean"] > 0.8 * s.ingress_groups_per_round
    assert result["diversity"]["senders_ever_selected_share"] > 0.9
    assert result["diversity"]["sampled_sender_share"] > 0.7
    assert result["rejected_other"] == 0  # trust checks found nothing wrong with honest nodes


def test_unbounded_mode_exceeds_the_budget_so_the_bound_is_the_mechanism() -> None:
    r = simulate(SimSettings(nodes=20, rounds=2, ingress_groups_per_round=0, churn=0.0, loss=0.0))
    assert r["ingress_envelopes_per_round"]["mean"] == 19
    b = simulate(SimSettings(nodes=20, rounds=2, churn=0.0, loss=0.0))
    assert b["ingress_envelopes_per_round"]["max"] <= 8
    assert b["ingress_bytes_per_round"]["max"] < r["ingress_bytes_per_round"]["mean"] / 2


def test_cli_writes_json_and_a_table(tmp_path: Path) -> None:
    out = tmp_path / "sim.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "swarmrl.cli",
            "simulate",
            "--nodes",
            "12",
            "--set",
            "rounds=2",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "| 12 | bounded |" in proc.stdout
    data = json.loads(out.read_text())
    assert data["results"][0]["nodes"] == 12
    bad = subprocess.run(
        [sys.executable, "-m", "swarmrl.cli", "simulate", "--nodes", "1"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "simulate.nodes" in bad.stderr
