"""How a question becomes the model's prompt, identically for warm start, generation and training."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from transformers import PreTrainedTokenizerBase


def prompt_ids(tokenizer: PreTrainedTokenizerBase, question: str) -> list[int]:
    """Token ids of the prompt. Chat models get their chat template; plain models get ``<bos>question``."""
    return prompts_ids(tokenizer, [question])[0]


def _chat_prompt_ids(tokenizer: PreTrainedTokenizerBase, question: str) -> list[int]:
    messages = [{"role": "user", "content": question}]
    out: Any = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if not isinstance(out, list):
        out = out["input_ids"]
    return [int(i) for i in out]


def prompts_ids(tokenizer: PreTrainedTokenizerBase, questions: Sequence[str]) -> list[list[int]]:
    """``prompt_ids`` of many questions; plain models are tokenized in one batched tokenizer call."""
    if not questions:
        return []
    if getattr(tokenizer, "chat_template", None):
        return [_chat_prompt_ids(tokenizer, q) for q in questions]
    encoded = tokenizer(list(questions), add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    head = [int(bos)] if bos is not None else []
    return [head + [int(i) for i in ids] for ids in encoded]


def completion_ids(tokenizer: PreTrainedTokenizerBase, text: str, eos: bool = True) -> list[int]:
    """Token ids of a completion text (external rollouts are re-tokenized with the local tokenizer)."""
    ids = [int(i) for i in tokenizer(text, add_special_tokens=False)["input_ids"]]
    if eos and tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    return ids
