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
    assert "default" in {a["name"] for a in settings["arms"]}
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


def _sapo_config(config: Path, out: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "swarmrl.cli", "experiment", "sapo", "--config", str(config), "--smoke"]
    return subprocess.run(
        [*cmd, "--out", str(out)], cwd=REPO, env=node_env(), capture_output=True, text=True, timeout=300
    )


@pytest.mark.timeout(330)
def test_sapo_runs_on_the_users_config_and_local_hf_model(tmp_path: Path) -> None:
    """`experiment sapo --config FILE`: the model (a Hugging Face directory saved by this test), tasks and
    rewards come from a node config; the one regime is named after the file; every arm is summarised."""
    import torch
    import yaml
    from transformers import Qwen2ForCausalLM

    from swarmrl.trainer.policy import tiny_qwen2_config
    from swarmrl.trainer.tokenizer import build_char_tokenizer

    tok = build_char_tokenizer()
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(
        tiny_qwen2_config(tok, hidden_size=16, intermediate_size=32, layers=1, heads=2, kv_heads=2)
    )
    model_dir = tmp_path / "my-hf-model"
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    cfg = tmp_path / "mine.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "model": {"name": str(model_dir)},
                "tasks": {"sources": [{"dataset": "add"}, {"dataset": "sub"}], "eval_questions": 4},
                "generation": {"num_completions": 3, "max_new_tokens": 3},
                "rewards": {"modules": [{"name": "exact_match"}]},
            }
        )
    )
    out = tmp_path / "sapo"
    proc = _sapo_config(cfg, out)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    doc = json.loads((out / "sapo-results.json").read_text())
    settings = doc["settings"]
    assert settings["base_config"]["model"]["name"] == str(model_dir)
    assert [r["name"] for r in settings["regimes"]] == ["mine"]
    row = doc["summary"]["mine"]["arms"]["default"]
    assert set(row["paired_to_baseline"]) >= {"cumulative", "reward_per_token", "reward_per_second"}
    for unit in doc["units"]:
        for node in unit["arms"]["default"]["nodes"]:
            assert len(node["reward_mean"]) == settings["rounds"]
            assert sum(node["generation_tokens"]) > 0
    # a bad config is refused like `config check`: one line naming the field, exit 2
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"generation": {"num_completions": 0}}))
    proc = _sapo_config(bad, tmp_path / "x")
    assert proc.returncode == 2 and "generation.num_completions" in proc.stderr
