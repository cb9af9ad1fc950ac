"""vLLM backend on a GPU: sampling with log-probs, speed against the hf backend, and in-place weight sync.

The model is a 0.5B-class Qwen2 (Qwen2.5-0.5B's shape) built from a config with random weights (no
download) and the character tokenizer. Figures are printed and, when ``SWARMRL_GPU_REPORT`` names a file,
appended to it as JSON lines (``benchmarks/gpu_check.sh`` collects them).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from swarmrl.config.sections import ModelSection, TasksSection
from swarmrl.trainer.generation import HFGenerator, SamplingParams
from swarmrl.trainer.policy import Policy, load_policy

pytestmark = pytest.mark.gpu

PROMPTS = 64
N = 8
NEW_TOKENS = 64


def _report(record: dict[str, Any]) -> None:
    print(json.dumps(record))
    path = os.environ.get("SWARMRL_GPU_REPORT")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps(record) + "\n")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import Qwen2ForCausalLM

    from swarmrl.trainer.policy import tiny_qwen2_config
    from swarmrl.trainer.tokenizer import build_char_tokenizer

    out = tmp_path_factory.mktemp("qwen05b")
    tok = build_char_tokenizer()
    config = tiny_qwen2_config(
        tok,
        vocab_size=151936,
        hidden_size=896,
        intermediate_size=4864,
        layers=24,
        heads=14,
        kv_heads=2,
        max_position_embeddings=2048,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    model.to(dtype=torch.bfloat16)  # type: ignore[call-arg]
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def policy(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Policy:
    cfg = ModelSection(name=str(model_dir), device="cuda", dtype="bfloat16")
    return load_policy(cfg, TasksSection(), tmp_path_factory.mktemp("data"), 0)


@pytest.fixture(scope="module")
def vllm_gen(policy: Policy) -> Iterator[Any]:
    from swarmrl.trainer.vllm_backend import VLLMGenerator

    gen = VLLMGenerator(policy, gpu_memory_utilization=0.3, max_model_len=512)
    yield gen
    del gen


def _prompts(policy: Policy) -> list[list[int]]:
    from swarmrl.trainer.prompts import prompt_ids

    return [prompt_ids(policy.tokenizer, f"{i % 10}+{(7 * i) % 10}=") for i in range(PROMPTS)]


def test_vllm_samples_with_logprobs(policy: Policy, vllm_gen: Any) -> None:
    outs = vllm_gen.generate(_prompts(policy)[:4], SamplingParams(n=3, max_new_tokens=16))
    assert [len(g) for g in outs] == [3, 3, 3, 3]
    for group in outs:
        for c in group:
            assert 1 <= len(c.token_ids) <= 16
            assert len(c.logprobs) == len(c.token_ids)
            assert all(lp <= 1e-3 for lp in c.logprobs)


def test_vllm_logprobs_track_the_policy(policy: Policy, vllm_gen: Any) -> None:
    prompts = _prompts(policy)[:4]
    outs = vllm_gen.generate(prompts, SamplingParams(n=2, max_new_tokens=12))
    diffs = _logprob_diffs(policy, prompts, outs)
    _report({"check": "vllm_vs_hf_logprob_mean_abs_diff", "value": float(sum(diffs) / len(diffs))})
    assert sum(diffs) / len(diffs) < 0.2  # bf16 engines differ a little, never by much


def _logprob_diffs(policy: Policy, prompts: list[list[int]], outs: list[list[Any]]) -> list[float]:
    diffs: list[float] = []
    with torch.no_grad():
        for prompt, group in zip(prompts, outs, strict=True):
            for c in group:
                ids = torch.tensor([prompt + c.token_ids], device=policy.device)
                logits = policy.model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
                ref = torch.log_softmax(logits, -1).gather(
                    -1, torch.tensor(c.token_ids, device=ids.device)[:, None]
                )
                diffs.extend(abs(a - b) for a, b in zip(c.logprobs, ref.squeeze(-1).tolist(), strict=True))
    return diffs


def test_vllm_vs_hf_tokens_per_second(policy: Policy, vllm_gen: Any) -> None:
    prompts = _prompts(policy)
    params = SamplingParams(n=N, max_new_tokens=NEW_TOKENS)
    figures: dict[str, float] = {}
    for name, gen in (("vllm", vllm_gen), ("hf", HFGenerator(policy))):
        gen.generate(prompts[:8], SamplingParams(n=2, max_new_tokens=8))  # warm-up
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        outs = gen.generate(prompts, params)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        tokens = sum(len(c.token_ids) for g in outs for c in g)
        figures[name] = tokens / seconds
    _report(
        {
            "check": "generation_tokens_per_s",
            "prompts": PROMPTS,
            "n": N,
            "max_new_tokens": NEW_TOKENS,
            "params_m": policy.num_parameters() / 1e6,
            **{f"{k}_tokens_per_s": v for k, v in figures.items()},
            "vllm_over_hf": figures["vllm"] / figures["hf"],
        }
    )
    assert figures["vllm"] > 0 and figures["hf"] > 0


def test_sync_weights_reaches_the_engine(policy: Policy, vllm_gen: Any) -> None:
    prompts = _prompts(policy)[:4]
    outs = vllm_gen.generate(prompts, SamplingParams(n=2, max_new_tokens=8))
    before = _logprob_diffs(policy, prompts, outs)
    saved = {k: v.detach().clone() for k, v in policy.model.state_dict().items()}
    try:
        with torch.no_grad():
            gen = torch.Generator(device=policy.device).manual_seed(1)
            for p in policy.model.parameters():
                p.add_(
                    torch.randn(p.shape, generator=gen, device=p.device, dtype=torch.float32).to(p.dtype)
                    * 0.05
                )
        stale = _logprob_diffs(policy, prompts, outs)  # old vLLM log-probs against the new weights
        t0 = time.perf_counter()
        vllm_gen.sync_weights()
        sync_s = time.perf_counter() - t0
        fresh_outs = vllm_gen.generate(prompts, SamplingParams(n=2, max_new_tokens=8))
        fresh = _logprob_diffs(policy, prompts, fresh_outs)
        mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
        _report(
            {
                "check": "sync_weights",
                "seconds": sync_s,
                "diff_before": mean(before),
                "diff_stale": mean(stale),
                "diff_after_sync": mean(fresh),
            }
        )
        assert mean(stale) > 3 * mean(fresh), "vLLM still samples from the old weights after sync_weights()"
    finally:
        policy.model.load_state_dict(saved)
        vllm_gen.sync_weights()
