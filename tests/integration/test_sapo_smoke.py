"""`swarm-node experiment sapo --smoke` end to end in a subprocess: real nodes on the memory hub, both
regimes, paired seeds; the JSON, table and PNG must land in --out within the CI budget."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.nodeutil import REPO, node_env

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
@pytest.mark.timeout(330)
def test_sapo_smoke_writes_json_and_png(tmp_path: Path) -> None:
    out = tmp_path / "sapo"
    proc = subprocess.run(
        [sys.executable, "benchmarks/sapo.py", "--smoke", "--out", str(out)],
        cwd=REPO,
        env=node_env(),
        capture_output=True,
        text=True,
        timeout=300,  # ~25 s on an idle 2-core machine; generous for a loaded one
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    doc = json.loads((out / "sapo-results.json").read_text())
    assert (out / "sapo-reward.png").read_bytes()[:8] == PNG_MAGIC
    assert "# SAPO experiment" in (out / "sapo-table.md").read_text()
    assert "# SAPO experiment" in proc.stdout  # the benchmark prints the table
    settings = doc["settings"]
    assert {r["name"] for r in settings["regimes"]} == {"sparse", "dense"}
    assert len(doc["units"]) == len(settings["regimes"]) * len(settings["seeds"])
    for unit in doc["units"]:
        for arm in settings["arms"]:
            nodes = unit["arms"][arm["name"]]["nodes"]
            assert len(nodes) == settings["nodes"]
            for node in nodes:
                assert len(node["reward_mean"]) == settings["rounds"]
                assert len(node["zero_variance_fraction"]) == settings["rounds"]
    for regime in doc["summary"].values():
        assert set(regime["arms"]) == {a["name"] for a in settings["arms"]}
        assert regime["arms"][settings["arms"][0]["name"]]["realised_external"] == 0
