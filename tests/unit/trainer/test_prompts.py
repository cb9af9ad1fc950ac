"""Prompt token ids: the batched form equals one call per question, for plain and chat-template tokenizers;
the learner reuses the ids generation used."""

from __future__ import annotations

import copy

import torch
from transformers import Qwen2ForCausalLM

from swarmrl.config.sections import TrainerSection
from swarmrl.node.rollouts import PROMPT_IDS, to_samples, train_sequences
from swarmrl.protocol.types import Completion, RolloutGroup, TaskRef
from swarmrl.rewards.pipeline import ScoredGroup
from swarmrl.trainer.learner import Learner, TrainSequence
from swarmrl.trainer.policy import Policy, tiny_qwen2_config
from swarmrl.trainer.prompts import prompt_ids, prompts_ids
from swarmrl.trainer.tokenizer import build_char_tokenizer

QUESTIONS = ["What is 3 + 4?", "12*7=", "", "a longer question: 123 - 45 = ?"]


def test_batched_prompt_ids_equal_single_calls_plain_and_chat() -> None:
    tok = build_char_tokenizer()
    assert prompts_ids(tok, QUESTIONS) == [prompt_ids(tok, q) for q in QUESTIONS]
    assert prompts_ids(tok, []) == []
    chat = copy.deepcopy(tok)
    chat.chat_template = "{% for m in messages %}<{{ m['content'] }}>{% endfor %}"
    batched = prompts_ids(chat, QUESTIONS)
    assert batched == [prompt_ids(chat, q) for q in QUESTIONS]
    assert batched != prompts_ids(tok, QUESTIONS)  # the template is applied


def _policy() -> Policy:
    tok = build_char_tokenizer()
    torch.manual_seed(0)
    config = tiny_qwen2_config(tok, hidden_size=32, intermediate_size=64, layers=1, heads=2)
    return Policy(Qwen2ForCausalLM(config), tok, torch.device("cpu"), "t")


def test_learner_takes_the_prompt_ids_generation_used() -> None:
    policy = _policy()
    comps = [Completion(text="7", token_ids=[10, policy.eos_id], logprobs=[-1.0, -1.0], finished=True)] * 2
    group = RolloutGroup(
        TaskRef("builtin", "add", "d", 0, 1), "3+4", "7", comps, extras={PROMPT_IDS: [1, 99]}
    )
    scored = [ScoredGroup(rewards=[1.0, 0.0], modules={}, accuracy=[1.0, 0.0])]
    samples = [to_samples(group, None)]
    seqs = train_sequences(policy, [group], samples, scored, "grpo")
    assert [s.prompt_ids for s in seqs] == [[1, 99], [1, 99]]
    del group.extras[PROMPT_IDS]
    seqs = train_sequences(policy, [group], samples, scored, "grpo")
    assert seqs[0].prompt_ids == prompt_ids(policy.tokenizer, "3+4")


def test_updates_run_in_eval_mode_unless_checkpointing() -> None:
    policy = _policy()
    policy.model.train()  # dropout on, as a freshly loaded model may be
    learner = Learner(policy, TrainerSection())
    seqs = [TrainSequence([1, 20, 21], [10, policy.eos_id], [0.5, 0.5], None)]
    seen: list[bool] = []
    policy.model.register_forward_pre_hook(lambda m, _: seen.append(m.training))
    learner.step(seqs)
    assert seen and not any(seen)  # the update's forward passes ran with dropout off
    assert not policy.model.training
    ckpt = _policy()
    enable = (
        getattr(ckpt.model, "activation_checkpointing_enable", None)
        or ckpt.model.gradient_checkpointing_enable
    )
    enable()
    modes: list[bool] = []
    ckpt.model.register_forward_pre_hook(lambda m, _: modes.append(m.training))
    Learner(ckpt, TrainerSection()).step(seqs)
    assert modes and all(modes) and not ckpt.model.training  # train mode for the update, eval after
