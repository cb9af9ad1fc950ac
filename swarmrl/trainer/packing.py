"""Packed training forward: a micro-batch's distinct prompts and all its completions in ONE model call.

Why: on small models a forward pass costs mostly its fixed per-call overhead (tens of small ops per layer,
their autograd nodes, mask and rotary set-up), not arithmetic. The shared-prompt path of the learner needs
two calls (the prompts with a KV cache, then the completions), the plain path one call over every
completion with its prompt repeated (G times the prompt work). Packing lays the tokens out as one sequence,
``[prompt_1 .. prompt_K | completion_1 .. completion_B]`` (each completion without its last token, which is
only ever a target), restarts position ids per segment, and passes a 4-D block mask: a prompt token sees the
earlier tokens of its prompt; a completion token sees all of its group's prompt and the earlier tokens of its
own completion. That is exactly the attention each token has in the unpacked layouts, so log-probs and
gradients are the same (tests compare all three paths), in one call and one backward graph.

Only for architectures whose attention is fully described by a 4-D mask and explicit position ids (rotary
models of the Llama family) with the ``sdpa`` or ``eager`` kernels, without sliding windows, and only while
the packed length stays small (the mask is T x T): otherwise the learner keeps its other paths.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from swarmrl.trainer.grpo import selective_log_softmax

#: Model types known to take position ids and a 4-D attention mask as-is (rotary, no position-derived
#: biases such as ALiBi).
PACKABLE_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})
#: Longest packed sequence: attention and the mask grow with its square; longer micro-batches use the
#: shared-prompt path.
MAX_PACKED_TOKENS = 1024


def pack_mode(model: torch.nn.Module) -> str | None:
    """``"bool"`` (sdpa) or ``"additive"`` (eager) when ``model`` can run packed, else None."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "model_type", None) not in PACKABLE_TYPES:
        return None
    if getattr(config, "use_sliding_window", False) and getattr(config, "sliding_window", None):
        return None
    impl = getattr(config, "_attn_implementation", None)
    if impl == "sdpa":
        return "bool"
    if impl == "eager":
        return "additive"
    return None


def packed_length(prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]]) -> int:
    return sum(len(p) for p in prompts) + sum(len(c) - 1 for c in completions)


def packed_logprobs(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    group: Sequence[int],
    completions: Sequence[Sequence[int]],
    targets: torch.Tensor,
    mode: str,
) -> torch.Tensor:
    """log p of every completion token, ``[B, C]`` like ``targets`` (padding positions hold finite junk).

    ``prompts``: the distinct prompts; ``group[b]``: index of completion b's prompt; ``targets``: the
    completions right-padded to ``C``.
    """
    device = targets.device
    ids: list[int] = []
    pos: list[int] = []
    owner: list[int] = []  # prompt group of every token
    seg: list[int] = []  # segment of every token: prompt k -> k, completion b -> K + b
    starts: list[int] = []
    for k, p in enumerate(prompts):
        starts.append(len(ids))
        ids += p
        pos += range(len(p))
        owner += [k] * len(p)
        seg += [k] * len(p)
    n_prompts = len(prompts)
    first: list[int] = []  # position predicting each completion's first token: its prompt's last
    comp_start: list[int] = []
    for b, (g, c) in enumerate(zip(group, completions, strict=True)):
        body = list(c[:-1])
        plen = len(prompts[g])
        first.append(starts[g] + plen - 1)
        comp_start.append(len(ids))
        ids += body
        pos += range(plen, plen + len(body))
        owner += [g] * len(body)
        seg += [n_prompts + b] * len(body)
    total = len(ids)
    seg_t = torch.tensor(seg, device=device)
    owner_t = torch.tensor(owner, device=device)
    idx = torch.arange(total, device=device)
    is_prompt = seg_t < n_prompts
    causal_same = (seg_t.unsqueeze(1) == seg_t.unsqueeze(0)) & (idx.unsqueeze(0) <= idx.unsqueeze(1))
    # completion tokens (queries) see every token of their group's prompt (keys); prompt tokens only the
    # causal part of their own segment
    sees_prompt = (
        (owner_t.unsqueeze(1) == owner_t.unsqueeze(0)) & is_prompt.unsqueeze(0) & ~is_prompt.unsqueeze(1)
    )
    allowed = causal_same | sees_prompt
    mask: torch.Tensor = allowed
    if mode == "additive":
        dtype = next(model.parameters()).dtype
        mask = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(
            ~allowed, torch.finfo(dtype).min
        )
    out: Any = model(
        input_ids=torch.tensor([ids], device=device),
        attention_mask=mask[None, None],
        position_ids=torch.tensor([pos], device=device),
    )
    logits = out.logits[0]  # [T, V]
    c_max = targets.shape[1]
    rows = []
    for b, c in enumerate(completions):
        row = [first[b]] + [comp_start[b] + j for j in range(len(c) - 1)]
        rows.append(row + [first[b]] * (c_max - len(row)))
    gather = torch.tensor(rows, device=device)
    return selective_log_softmax(logits[gather], targets)
