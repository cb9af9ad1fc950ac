"""The parts of the vLLM backend that run without a GPU: clear errors, output parsing, weight naming."""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import pytest
import torch
from transformers import Qwen2ForCausalLM

from swarmrl.errors import ModelError
from swarmrl.trainer.generation import build_generator
from swarmrl.trainer.policy import Policy, tiny_qwen2_config
from swarmrl.trainer.tokenizer import build_char_tokenizer
from swarmrl.trainer.vllm_backend import VLLMGenerator, model_source, named_weights


def _policy() -> Policy:
    tok = build_char_tokenizer()
    config = tiny_qwen2_config(
        tok,
        hidden_size=16,
        intermediate_size=32,
        layers=1,
        heads=2,
        kv_heads=2,
        max_position_embeddings=32768,
    )
    return Policy(Qwen2ForCausalLM(config), tok, torch.device("cpu"), "t")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_vllm_backend_without_cuda_is_a_clear_model_error() -> None:
    with pytest.raises(ModelError, match="needs a CUDA GPU"):
        build_generator("vllm", _policy())


def test_missing_vllm_is_a_clear_model_error(monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(ModelError, match="pip install 'swarmrl\\[gpu\\]'"):
        VLLMGenerator(_policy())


def _bare(policy: Policy) -> VLLMGenerator:
    gen = object.__new__(VLLMGenerator)
    gen.policy = policy
    return gen


def _lp(value: float) -> SimpleNamespace:
    return SimpleNamespace(logprob=value)


def test_completion_parsing_keeps_eos_and_logprobs() -> None:
    policy = _policy()
    gen, eos = _bare(policy), policy.eos_id
    a, b = policy.tokenizer("42", add_special_tokens=False)["input_ids"]
    done = SimpleNamespace(
        token_ids=[a, b, eos],
        logprobs=[{a: _lp(-0.5)}, {b: _lp(-1.0)}, {eos: _lp(-0.1)}],
        finish_reason="stop",
    )
    c = gen._completion(done)
    assert (c.text, c.token_ids, c.logprobs, c.finished) == ("42", [a, b, eos], [-0.5, -1.0, -0.1], True)
    cut = SimpleNamespace(token_ids=[a, b], logprobs=[{a: _lp(-0.5)}, {b: _lp(-1.0)}], finish_reason="length")
    c = gen._completion(cut)
    assert (c.text, c.finished, c.logprobs) == ("42", False, [-0.5, -1.0])
    # Stopped on eos without listing it: eos appended, log-probs left to the learner.
    hidden = SimpleNamespace(token_ids=[a], logprobs=[{a: _lp(-0.5)}], finish_reason="stop")
    c = gen._completion(hidden)
    assert (c.token_ids, c.logprobs, c.finished) == ([a, eos], [], True)


def test_named_weights_and_model_source(tmp_path: object) -> None:
    policy = _policy()
    names = [n for n, _ in named_weights(policy.model)]
    assert "model.embed_tokens.weight" in names and "model.layers.0.self_attn.q_proj.weight" in names
    assert all(not t.requires_grad for _, t in named_weights(policy.model))
    with pytest.raises(ModelError, match="directory or hub id"):
        model_source(policy)
    policy.model.name_or_path = "/some/dir"
    assert model_source(policy) == "/some/dir"


def test_weight_sync_waits_for_a_generation_in_flight() -> None:
    """Overlapped rounds generate in one thread while training syncs weights from another: the engine must
    never load weights mid-generation. vLLM needs a GPU, so the engine here is a stand-in that records the
    order of calls (the real one runs in tests/gpu)."""
    import threading

    policy = _policy()
    gen = _bare(policy)
    gen._lock = threading.Lock()
    gen._vllm = SimpleNamespace(SamplingParams=lambda **kw: kw)
    started, release, events = threading.Event(), threading.Event(), []

    class Engine:
        def generate(self, requests: list[object], sampling_params: object, use_tqdm: bool) -> list[object]:
            events.append("generate-start")
            started.set()
            release.wait(10)
            events.append("generate-end")
            return [SimpleNamespace(outputs=[]) for _ in requests]

        def load_weights(self, weights: object) -> None:
            events.append("load")

    gen.llm = Engine()
    gen._engine_model = gen.llm
    worker = threading.Thread(target=gen.generate, args=([[1, 2]], build_params()))
    worker.start()
    assert started.wait(10)
    syncer = threading.Thread(target=gen.sync_weights)
    syncer.start()
    syncer.join(0.3)
    assert syncer.is_alive(), "sync_weights did not wait for the generation in flight"
    release.set()
    worker.join(10)
    syncer.join(10)
    assert events == ["generate-start", "generate-end", "load"]


def build_params() -> object:
    from swarmrl.trainer.generation import SamplingParams

    return SamplingParams(n=2, max_new_tokens=4)
