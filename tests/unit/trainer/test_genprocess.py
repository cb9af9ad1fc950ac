"""Generation in a child process: same samples as in-process generation, weights follow ``sync_weights``,
a killed child is restarted, errors surface as ``GenerationError``, and the child writes checkpoints (or the
parent does, when the child died with one in flight)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from transformers import Qwen2ForCausalLM

from swarmrl.trainer.checkpoint import load_latest
from swarmrl.trainer.generation import HFGenerator, SamplingParams
from swarmrl.trainer.genlaunch import Slot, fill, flatten
from swarmrl.trainer.genprocess import GenerationError, ProcessGenerator
from swarmrl.trainer.policy import Policy, tiny_qwen2_config
from swarmrl.trainer.tokenizer import build_char_tokenizer

PROMPTS = [[1, 10, 11, 12], [1, 20, 21], [1, 30, 31, 32, 33]]


def _policy() -> Policy:
    tok = build_char_tokenizer()
    torch.manual_seed(0)
    config = tiny_qwen2_config(tok, hidden_size=32, intermediate_size=64, layers=2, heads=4, kv_heads=2)
    return Policy(Qwen2ForCausalLM(config).eval(), tok, torch.device("cpu"), "t")


def _local(policy: Policy, params: SamplingParams, seed: int) -> list[list[tuple[list[int], str]]]:
    torch.manual_seed(seed)
    out = HFGenerator(policy).generate(PROMPTS, params)
    return [[(c.token_ids, c.text) for c in group] for group in out]


def _remote(gen: ProcessGenerator, params: SamplingParams, seed: int) -> list[list[tuple[list[int], str]]]:
    torch.manual_seed(seed)  # generate() draws the child's seed from the parent's torch RNG (_drawn)
    out = gen.generate(PROMPTS, params)
    return [[(c.token_ids, c.text) for c in group] for group in out]


@pytest.fixture
def setup() -> Iterator[tuple[Policy, ProcessGenerator, list[int]]]:
    policy = _policy()
    version = [7]
    gen = ProcessGenerator(policy, threads=1, version=lambda: version[0])
    try:
        yield policy, gen, version
    finally:
        gen.close()


def _drawn(seed: int) -> int:
    torch.manual_seed(seed)
    return int(torch.randint(0, 2**62, (1,)).item())


def test_child_samples_what_the_parent_would(setup: tuple[Policy, ProcessGenerator, list[int]]) -> None:
    policy, gen, _ = setup
    greedy = SamplingParams(n=1, max_new_tokens=6, greedy=True)
    assert _remote(gen, greedy, 0) == _local(policy, greedy, _drawn(0))
    sampled = SamplingParams(n=4, max_new_tokens=6, temperature=1.3)
    remote = _remote(gen, sampled, 3)
    assert remote == _local(policy, sampled, _drawn(3))
    assert len({tuple(t) for t, _ in remote[0]}) > 1, (
        "sampling at temperature 1.3 gave four equal completions"
    )
    assert gen.last_version == 7


def test_weights_follow_sync_weights(setup: tuple[Policy, ProcessGenerator, list[int]]) -> None:
    policy, gen, version = setup
    greedy = SamplingParams(n=1, max_new_tokens=6, greedy=True)
    before = _remote(gen, greedy, 0)
    with torch.no_grad():
        for p in policy.model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    # not yet published: the child still samples from version 7
    assert _remote(gen, greedy, 0) == before and gen.last_version == 7
    version[0] = 8
    gen.sync_weights()
    after = _remote(gen, greedy, 0)
    assert after == _local(policy, greedy, _drawn(0)) and after != before
    assert gen.last_version == 8


def test_killed_child_is_restarted_and_errors_surface(
    setup: tuple[Policy, ProcessGenerator, list[int]],
) -> None:
    policy, gen, _ = setup
    greedy = SamplingParams(n=1, max_new_tokens=4, greedy=True)
    expected = _local(policy, greedy, _drawn(0))
    assert _remote(gen, greedy, 0) == expected
    pid = gen.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert _remote(gen, greedy, 0) == expected  # restarted, same weights (shared memory kept)
    assert gen.pid != pid
    with pytest.raises(GenerationError, match=r"IndexError|index out of range"):
        gen.generate([[1, 10_000_000]], greedy)  # a token id outside the vocabulary fails in the child
    assert _remote(gen, greedy, 0) == expected  # and the child goes on


def test_child_writes_checkpoints_and_parent_takes_over_when_it_dies(
    setup: tuple[Policy, ProcessGenerator, list[int]], tmp_path: Path
) -> None:
    policy, gen, _ = setup
    opt = torch.optim.AdamW(policy.model.parameters(), lr=1e-3)
    policy.model(torch.tensor([PROMPTS[0]])).logits.sum().backward()
    opt.step()
    extra = {"task_rng": (3, (1, 2), None), "rng": {"torch": torch.get_rng_state()}}
    gen.submit_checkpoint(tmp_path, 1, 5, policy.model.state_dict(), opt.state_dict(), extra, keep=2)
    path = gen.wait_checkpoint()
    ck = load_latest(tmp_path)
    assert ck is not None and ck.path == path and (ck.round, ck.policy_version) == (1, 5)
    for k, v in policy.model.state_dict().items():
        assert torch.equal(ck.model_state[k], v)
    assert torch.equal(ck.optimizer_state["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert ck.state["task_rng"] == (3, (1, 2), None)
    # the child dies with a write in flight: the parent writes the same state from the shared buffers
    with torch.no_grad():
        next(policy.model.parameters()).add_(1.0)
    pid = gen.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # cannot write before it is killed
    gen.submit_checkpoint(tmp_path, 2, 6, policy.model.state_dict(), opt.state_dict(), extra, keep=2)
    os.kill(pid, signal.SIGKILL)
    path = gen.wait_checkpoint()
    ck = load_latest(tmp_path)
    assert ck is not None and ck.path == path and ck.round == 2
    assert torch.equal(next(iter(ck.model_state.values())), next(iter(policy.model.state_dict().values())))


def test_flatten_and_fill_round_trip() -> None:
    tree = {"a": [1, (2.0, "x")], "b": {"c": 3, "d": [4, 5]}}
    skeleton, leaves = flatten(tree, lambda x: isinstance(x, int))
    assert leaves == [1, 3, 4, 5] and skeleton["b"]["c"] == Slot(1)
    assert fill(skeleton, leaves) == tree


@pytest.mark.parametrize(
    ("overrides", "device", "expected"),
    [
        ({}, "cpu", True),  # the default: overlapped, auto -> a process on CPU
        ({}, "cuda", False),  # auto -> a thread on a GPU
        ({"trainer": {"max_staleness": 0}}, "cpu", False),
        ({"generation": {"worker": "thread"}}, "cpu", False),
        ({"generation": {"worker": "process"}}, "cuda", True),
        ({"generation": {"backend": "vllm"}}, "cuda", False),
        ({"model": {"lora_rank": 8}}, "cpu", False),
    ],
)
def test_which_nodes_generate_in_a_process(overrides: dict[str, object], device: str, expected: bool) -> None:
    from swarmrl.config import NodeConfig
    from swarmrl.trainer.genlaunch import wants_process

    cfg = NodeConfig.model_validate(overrides)
    assert wants_process(cfg, device) is expected
    explicit = NodeConfig.model_validate(
        {**overrides, "model": {**overrides.get("model", {}), "device": device}}
    )  # type: ignore[dict-item]
    assert wants_process(explicit) is expected  # before the policy is loaded: model.device decides


def test_too_little_shared_memory_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def full(self: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("unable to write to file </torch_1_2_3>: No space left on device (28)")

    monkeypatch.setattr(torch.Tensor, "share_memory_", full)
    with pytest.raises(GenerationError, match=r"/dev/shm.*generation.worker: thread"):
        ProcessGenerator(_policy(), threads=1, version=lambda: 0)
