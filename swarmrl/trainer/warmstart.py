"""Supervised warm start of the embedded model on generated task solutions.

Pure RL from random weights learns nothing on these tasks (BASELINES.md); a short supervised pass gives a
policy whose reward is clearly above zero and far below the maximum, which is where GRPO has signal.
"""

from __future__ import annotations

import logging
import random
import time

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from swarmrl.config.sections import TasksSection, TinyModelSection
from swarmrl.tasks import TaskSampler, build_source
from swarmrl.trainer.prompts import completion_ids, prompt_ids

log = logging.getLogger(__name__)
#: A slow warm start logs its step this often (a launcher waiting on start-up sees it is alive).
_PROGRESS_EVERY_S = 10.0


def _batch(
    pairs: list[tuple[list[int], list[int]]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    width = max(len(p) + len(c) for p, c in pairs)
    ids = torch.full((len(pairs), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(pairs), width), dtype=torch.long)
    labels = torch.full((len(pairs), width), -100, dtype=torch.long)
    for row, (p, c) in enumerate(pairs):
        seq = p + c
        ids[row, : len(seq)] = torch.tensor(seq)
        attn[row, : len(seq)] = 1
        labels[row, len(p) : len(seq)] = torch.tensor(c)
    return ids, attn, labels


def warm_start(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    tasks: TasksSection,
    tiny: TinyModelSection,
    seed: int,
) -> float:
    """Train on ``warmstart_examples`` generated (question, answer) pairs; returns the last loss."""
    if tiny.warmstart_steps == 0:
        return float("nan")
    specs = tiny.warmstart_sources or tasks.sources
    sources = [build_source(s.source, s.dataset, s.config, tasks.seed, tasks.size) for s in specs]
    rng = random.Random(seed * 7919 + 17)
    sampler = TaskSampler(sources, [s.weight for s in specs], rng, tasks.eval_questions)
    examples = [
        (prompt_ids(tokenizer, t.question), completion_ids(tokenizer, t.answer))
        for t in sampler.sample(tiny.warmstart_examples)
    ]
    pad = int(tokenizer.pad_token_id)  # type: ignore[arg-type]
    opt = torch.optim.AdamW(model.parameters(), lr=tiny.warmstart_lr, weight_decay=0.0)
    model.train()
    loss_value = float("nan")
    reported = time.monotonic()
    for step in range(tiny.warmstart_steps):
        if time.monotonic() - reported > _PROGRESS_EVERY_S:  # visible progress on a slow, shared machine
            reported = time.monotonic()
            log.info("warm start: step %d/%d, loss %.3f", step, tiny.warmstart_steps, loss_value)
        ids, attn, labels = _batch(rng.sample(examples, min(tiny.warmstart_batch, len(examples))), pad)
        out = model(input_ids=ids, attention_mask=attn, labels=labels)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss_value = float(out.loss.detach())
    model.eval()
    log.info("warm start done: final loss %.3f", loss_value)
    return loss_value
