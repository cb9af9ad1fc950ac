"""Policy loading: a locally saved model by path, and the embedded default (cached, reproducible)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import Qwen2ForCausalLM

from swarmrl.config import NodeConfig, load_config
from swarmrl.trainer.generation import HFGenerator, SamplingParams
from swarmrl.trainer.policy import embedded_fingerprint, load_policy, tiny_qwen2_config
from swarmrl.trainer.prompts import prompt_ids
from swarmrl.trainer.tokenizer import build_char_tokenizer

TINY = {"hidden_size": 32, "layers": 1, "heads": 2, "intermediate_size": 64, "warmstart_steps": 3}


def test_load_local_path_saved_by_test(tmp_path: Path) -> None:
    tok = build_char_tokenizer()
    cfg = tiny_qwen2_config(
        tok,
        hidden_size=32,
        intermediate_size=64,
        layers=1,
        heads=2,
        kv_heads=2,
        tie_word_embeddings=False,
        max_position_embeddings=32768,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(cfg)
    out = tmp_path / "my-model"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    node_cfg = load_config(None, env={}, overrides={"model.name": str(out)})
    policy = load_policy(node_cfg.model, node_cfg.tasks, tmp_path / "data", seed=0)
    assert policy.name == str(out)
    for name, tensor in model.state_dict().items():
        assert torch.equal(policy.model.state_dict()[name], tensor), name
    comps = HFGenerator(policy).generate(
        [prompt_ids(policy.tokenizer, "1+2=")], SamplingParams(n=3, max_new_tokens=4)
    )
    assert len(comps) == 1 and len(comps[0]) == 3
    for c in comps[0]:
        assert 1 <= len(c.token_ids) <= 4 and len(c.logprobs) == len(c.token_ids)
        assert all(lp <= 0 for lp in c.logprobs)


def test_embedded_is_cached_and_reproducible(tmp_path: Path) -> None:
    cfg = NodeConfig.model_validate({"model": {"tiny": TINY}})
    a = load_policy(cfg.model, cfg.tasks, tmp_path / "a", seed=5)
    cache = tmp_path / "a" / "models" / f"tiny-default-{embedded_fingerprint(cfg.model, cfg.tasks, 5)}"
    assert (cache / "config.json").is_file()
    mtime = (cache / "config.json").stat().st_mtime_ns
    again = load_policy(cfg.model, cfg.tasks, tmp_path / "a", seed=5)
    assert (cache / "config.json").stat().st_mtime_ns == mtime  # reused, not rebuilt
    b = load_policy(cfg.model, cfg.tasks, tmp_path / "b", seed=5)  # built afresh elsewhere from the same seed
    for name, tensor in a.model.state_dict().items():
        assert torch.equal(b.model.state_dict()[name], tensor), name
        assert torch.equal(again.model.state_dict()[name], tensor), name
    c = load_policy(cfg.model, cfg.tasks, tmp_path / "c", seed=6)
    assert any(not torch.equal(c.model.state_dict()[n], t) for n, t in a.model.state_dict().items())
