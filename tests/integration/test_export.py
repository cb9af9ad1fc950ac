"""Taking the model home: a trained node's checkpoint exported as a Hugging Face directory, loaded by plain
transformers in a process that never imports swarmrl (greedy completions identical to the node's own), also
for a LoRA-trained node (merged); `run --model EXPORT` trains on from it; `eval` prints pass@k and writes
JSON; a push to an unreachable hub fails with one line and leaves nothing behind."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from swarmrl.config import NodeConfig
from swarmrl.errors import ConfigError
from swarmrl.node.export import export_model
from swarmrl.node.journal import read_journal
from swarmrl.node.node import Node
from swarmrl.trainer.checkpoint import load_latest
from swarmrl.trainer.generation import SamplingParams
from swarmrl.trainer.prompts import prompts_ids
from tests.nodeutil import FAST, deep_merge, node_env, run_cli, write_config

ROUNDS = 3
#: a warm start long enough that greedy answers are partly right and rounds have a learning signal
TRAIN: dict[str, Any] = {
    "node": {"rounds": ROUNDS, "eval_every": ROUNDS, "metrics_port": -1, "control_port": -1},
    "model": {"tiny": {"warmstart_steps": 150}},
}
EXTRA_PROMPTS = ["12+7=", "3+4=", "hello", "99+99="]

#: Runs with a clean environment and outside the repository: imports transformers, never swarmrl.
PLAIN = r"""
import json, sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

path, prompts, new = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
tok = AutoTokenizer.from_pretrained(path)
model = AutoModelForCausalLM.from_pretrained(path)
model.eval()
out = []
for p in prompts:
    inputs = tok(p, return_tensors="pt")
    with torch.no_grad():
        seq = model.generate(**inputs, do_sample=False, max_new_tokens=new)
    ids = seq[0, inputs["input_ids"].shape[1]:].tolist()
    out.append({"ids": ids, "text": tok.decode(ids, skip_special_tokens=True)})
assert not [m for m in sys.modules if m.split(".")[0] == "swarmrl"], "swarmrl was imported"
print(json.dumps({"completions": out, "dtype": str(model.dtype), "class": type(model).__name__}))
"""


@dataclass
class Trained:
    data: Path
    node: Node
    prompts: list[str]
    greedy: list[dict[str, Any]]  # the node's own greedy generation of ``prompts``


def _train(root: Path, extra: dict[str, Any]) -> Trained:
    data = root / "data"
    raw = deep_merge(deep_merge(FAST, TRAIN), deep_merge({"node": {"data_dir": str(data)}}, extra))
    node = Node(NodeConfig.model_validate(raw))
    assert asyncio.run(node.run()) == 0
    prompts = [t.question for t in node.tasks.eval_set()] + EXTRA_PROMPTS
    outs = node.generator.generate(
        prompts_ids(node.policy.tokenizer, prompts),
        SamplingParams(1, max_new_tokens=node.cfg.generation.max_new_tokens, greedy=True),
    )
    greedy = [{"ids": list(c[0].token_ids), "text": c[0].text} for c in outs]
    return Trained(data, node, prompts, greedy)


def _plain_transformers(model_dir: Path, prompts: list[str], new_tokens: int, cwd: Path) -> dict[str, Any]:
    env = {k: v for k, v in node_env().items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    proc = subprocess.run(
        [sys.executable, "-I", "-c", PLAIN, str(model_dir), json.dumps(prompts), str(new_tokens)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return _train(tmp_path_factory.mktemp("full"), {})


def test_export_loads_in_plain_transformers_with_the_nodes_greedy_completions(
    full: Trained, tmp_path: Path
) -> None:
    out = tmp_path / "export"
    res = run_cli("export", "--data-dir", str(full.data), "--out", str(out), timeout=600)
    assert res.returncode == 0, res.stderr
    assert f"wrote {out}: round {ROUNDS}" in res.stdout
    for name in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json", "README.md"):
        assert (out / name).is_file(), name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp directory left behind"

    plain = _plain_transformers(out, full.prompts, full.node.cfg.generation.max_new_tokens, tmp_path)
    assert plain["class"] == "Qwen2ForCausalLM" and plain["dtype"] == "torch.float32"
    assert plain["completions"] == full.greedy
    assert any(c["text"] for c in full.greedy)  # not a vacuous match of empty answers

    card = (out / "README.md").read_text()
    records = read_journal(full.data / "journal.log")
    final = records[-1]
    assert final["eval_accuracy"] is not None and final["policy_version"] > 0
    for fact in (
        "`tiny-default`",
        f"| rounds | {ROUNDS} ",
        f"| policy version | {final['policy_version']} ",
        "`arithmetic/add`",
        "`exact_match` x 1",
        "alone (no swarm); per round 2 local + 0 external groups",
        f"greedy held-out exact match {final['eval_accuracy']:.3f} at round {ROUNDS}",
    ):
        assert fact in card, fact

    # the export's weights are the checkpoint's
    ckpt = load_latest(full.data / "checkpoints")
    assert ckpt is not None
    weights = load_file(str(out / "model.safetensors"))
    for name, tensor in weights.items():
        assert torch.equal(tensor, ckpt.model_state[name]), name

    # bfloat16 on request, atomically replacing the directory (--force)
    with pytest.raises(ConfigError, match="--force"):
        export_model(full.data, out, dtype="bfloat16")
    export_model(full.data, out, dtype="bfloat16", force=True)
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    assert all(t.dtype == torch.bfloat16 for t in load_file(str(out / "model.safetensors")).values())


def test_lora_node_exports_merged_with_identical_greedy_completions(tmp_path: Path) -> None:
    lora = _train(tmp_path, {"model": {"lora_rank": 4}})
    assert read_journal(lora.data / "journal.log")[-1]["policy_version"] > 0
    out = tmp_path / "export"
    result = export_model(lora.data, out)
    assert result.lora_merged and result.round == ROUNDS
    names = set(load_file(str(out / "model.safetensors")))
    assert not [n for n in names if "lora" in n or "base_model" in n]  # plain transformers weights
    plain = _plain_transformers(out, lora.prompts, lora.node.cfg.generation.max_new_tokens, tmp_path)
    assert plain["completions"] == lora.greedy
    assert "LoRA rank 4, merged into the weights" in (out / "README.md").read_text()


def test_run_from_export_continues_and_eval_reports_pass_at_k(full: Trained, tmp_path: Path) -> None:
    out = tmp_path / "export"
    export_model(full.data, out)
    exported = load_file(str(out / "model.safetensors"))

    # eval on the export: pass@1 and pass@k per source, JSON with the greedy completions of the node
    report = tmp_path / "eval.json"
    res = run_cli("eval", "--model", str(out), "--samples", "4", "--out", str(report), timeout=600)
    assert res.returncode == 0, res.stderr
    assert "| source | questions | greedy pass@1 | pass@1 | pass@2 | pass@4 |" in res.stdout
    assert "| arithmetic/add | 8 |" in res.stdout
    data = json.loads(report.read_text())
    src = data["sources"][0]
    assert src["source"] == "arithmetic/add" and src["questions"] == 8
    assert 0.0 <= src["pass@1"] <= src["pass@2"] <= src["pass@4"] <= 1.0
    n_eval = len(data["questions"])
    assert [q["greedy"] for q in data["questions"]] == [c["text"] for c in full.greedy[:n_eval]]
    assert src["greedy_pass@1"] == pytest.approx(read_journal(full.data / "journal.log")[-1]["eval_accuracy"])

    # a new node trains on from the exported weights
    data_dir = tmp_path / "next"
    cfg = write_config(tmp_path / "next.yaml", data_dir, {"node": {"metrics_port": -1}})
    run = run_cli("run", "--config", str(cfg), "--model", str(out), "--rounds", "2", timeout=600)
    assert run.returncode == 0, run.stderr
    assert f"policy {out}" in run.stderr
    records = read_journal(data_dir / "journal.log")
    assert [r["round"] for r in records] == [1, 2] and records[-1]["policy_version"] > 0
    ckpt = load_latest(data_dir / "checkpoints")
    assert ckpt is not None
    # Adam moves each weight by about lr per step: the run started from the export, not from anything else
    steps, lr = records[-1]["policy_version"], 3e-4
    drift = max(float((ckpt.model_state[n] - t).abs().max()) for n, t in exported.items())
    assert 0 < drift <= 3 * steps * lr


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_push_to_unreachable_hub_fails_with_one_line_and_writes_nothing(
    full: Trained, tmp_path: Path
) -> None:
    out = tmp_path / "export"
    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}", "HF_TOKEN": "hf_offline"}
    args = ["export", "--data-dir", str(full.data), "--out", str(out), "--push-to-hub", "someone/tiny-swarm"]
    proc = subprocess.run(
        [sys.executable, "-m", "swarmrl.cli", *args],
        capture_output=True,
        text=True,
        env={k: v for k, v in env.items() if not k.startswith("SWARMRL_")},
        timeout=600,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "push to the hub failed for 'someone/tiny-swarm'" in lines[0] and "nothing was written" in lines[0]
    assert list(tmp_path.iterdir()) == []  # neither the export nor a temp directory
