"""Generation backends behind one interface: ``hf`` (transformers, CPU or CUDA) and ``vllm`` (GPU).

Each returns, per prompt, ``n`` completions with their token ids and the behaviour log-probs of the sampled
tokens (log-softmax of the raw logits: the policy's own distribution, as the loss uses it).

``HFGenerator`` runs its own batched sampling loop over a transformers KV cache rather than ``generate``:
each distinct prompt is prefilled once and its cache repeated for the ``n`` samples (a group shares its
prompt), finished rows leave the batch at once, and nothing is recomputed. On small models, where a forward
pass costs in proportion to the tokens it sees, this does less than half of ``generate``'s work. Models whose
forward does not take a cache object fall back to ``generate`` (same results, same interface).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from swarmrl.errors import InvalidValue
from swarmrl.protocol.types import Completion
from swarmrl.trainer.policy import Policy


@dataclass(frozen=True)
class SamplingParams:
    n: int = 8
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 8
    greedy: bool = False


class Generator(Protocol):
    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[list[Completion]]: ...

    def sync_weights(self) -> None:
        """Make the backend use the policy's current weights (no-op when it shares them)."""


def left_pad(
    prompts: list[list[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (width - len(p)) + list(p) for p in prompts], dtype=torch.long)
    attn = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], dtype=torch.long)
    return ids.to(device), attn.to(device)


# -- KV-cache plumbing shared with the learner ---------------------------------------------------------------
def _forward_params(model: torch.nn.Module) -> set[str]:
    """Parameter names of the forward of the underlying transformers model (through a peft wrapper)."""
    get_base = getattr(model, "get_base_model", None)
    base = get_base() if callable(get_base) else model
    try:
        return set(inspect.signature(base.forward).parameters)
    except (TypeError, ValueError):
        return set()


def cache_kwarg(model: torch.nn.Module) -> str | None:
    """The name under which the model's forward takes a ``Cache`` (``cache`` in transformers >= 5.x,
    ``past_key_values`` before), or None when it takes none (then callers use a plain path)."""
    params = _forward_params(model)
    for name in ("cache", "past_key_values"):
        if name in params:
            return name
    return None


def new_cache(model: torch.nn.Module) -> Any:
    """An empty ``DynamicCache`` for ``model`` (the constructor's signature changed across versions)."""
    from transformers import DynamicCache

    config = getattr(model, "config", None)
    try:
        return DynamicCache(config=config)
    except TypeError:
        return DynamicCache()


def sample_tokens(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Next token per row: argmax when greedy, else a draw at ``temperature`` from the top-p nucleus."""
    if params.greedy:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass strictly above each token
        sorted_probs = sorted_probs.masked_fill(before >= params.top_p, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    return torch.multinomial(probs, 1).squeeze(-1)


class HFGenerator:
    """Batched sampling with a KV cache under ``inference_mode`` (``engine="loop"``, the default when the
    model supports it) or transformers ``generate`` (``engine="generate"``); both give the same interface."""

    def __init__(self, policy: Policy, max_batch: int = 512, engine: str = "auto") -> None:
        if engine not in ("auto", "loop", "generate"):
            raise InvalidValue(f"unknown engine '{engine}'; use 'auto', 'loop' or 'generate'")
        self.policy = policy
        self.max_batch = max_batch
        self.engine = engine

    def sync_weights(self) -> None:
        return None

    def _loop_cache_name(self) -> str | None:
        """The cache keyword when the sampling loop applies, None to use ``generate``."""
        if self.engine == "generate":
            return None
        name = cache_kwarg(self.policy.model)
        if self.engine == "loop" and name is None:
            raise InvalidValue("engine 'loop' needs a model whose forward takes a KV cache object")
        return name

    @torch.inference_mode()
    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[list[Completion]]:
        n = 1 if params.greedy else params.n
        model = self.policy.model
        was_training = model.training
        if was_training:
            model.eval()
        try:
            cache_name = self._loop_cache_name()
            if cache_name is not None:
                per_chunk = max(1, self.max_batch // n)
                out: list[list[Completion]] = []
                for start in range(0, len(prompts), per_chunk):
                    out.extend(self._sample_loop(prompts[start : start + per_chunk], n, params, cache_name))
                return out
            flat = [p for p in prompts for _ in range(n)]
            results: list[Completion] = []
            for start in range(0, len(flat), self.max_batch):
                results.extend(self._generate_batch(flat[start : start + self.max_batch], params))
            return [results[i * n : (i + 1) * n] for i in range(len(prompts))]
        finally:
            if was_training:
                model.train()

    def _sample_loop(
        self, prompts: list[list[int]], n: int, params: SamplingParams, cache_name: str
    ) -> list[list[Completion]]:
        """Prefill each distinct prompt once, repeat its cache ``n`` times, decode until eos or the limit."""
        policy, model = self.policy, self.policy.model
        device, eos, pad = policy.device, policy.eos_id, policy.pad_id
        ids, attn = left_pad(prompts, pad, device)
        pos = (attn.cumsum(-1) - 1).clamp(min=0)
        cache = new_cache(model)
        kwargs: dict[str, Any] = {cache_name: cache}
        if "logits_to_keep" in _forward_params(model):
            kwargs["logits_to_keep"] = 1  # only the last prompt position predicts (no [B, P, V] logits)
        out = model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True, **kwargs)
        logits = out.logits[:, -1, :]
        if n > 1:
            logits = logits.repeat_interleave(n, dim=0)
            attn = attn.repeat_interleave(n, dim=0)
            cache.batch_repeat_interleave(n)
        total = len(prompts) * n
        next_pos = attn.sum(-1, keepdim=True)  # [B, 1]: position of the first new token
        rows = torch.arange(total, device=device)  # original row of each live batch row
        steps = params.max_new_tokens
        tokens = torch.full((total, steps), pad, dtype=torch.long, device=device)
        logps = torch.zeros((total, steps), dtype=torch.float32, device=device)
        lengths = torch.full((total,), steps, dtype=torch.long, device=device)
        # Rows that emitted eos are dead: whatever they write after it lies beyond their length and is cut
        # off; they leave the batch (cache included) once a quarter of it is dead, not at every single stop.
        live = torch.ones(total, dtype=torch.bool, device=device)
        for t in range(steps):
            logits = logits.float()
            tok = sample_tokens(logits, params)
            picked = logits.gather(-1, tok.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
            tokens[rows, t] = tok
            logps[rows, t] = picked
            done = (tok == eos) & live
            if t == steps - 1:
                break
            if bool(done.any()):
                lengths[rows[done]] = t + 1
                live = live & ~done
                n_live = int(live.sum())
                if n_live == 0:
                    break
                if 4 * (live.numel() - n_live) >= live.numel():
                    keep = live.nonzero().squeeze(-1)
                    cache.batch_select_indices(keep)
                    rows, tok, attn, next_pos, live = (
                        rows[keep],
                        tok[keep],
                        attn[keep],
                        next_pos[keep],
                        live[keep],
                    )
            attn = torch.cat([attn, attn.new_ones((attn.shape[0], 1))], dim=1)
            out = model(
                input_ids=tok.unsqueeze(-1),
                attention_mask=attn,
                position_ids=next_pos,
                use_cache=True,
                **{cache_name: cache},
            )
            logits = out.logits[:, -1, :]
            next_pos = next_pos + 1
        return self._completions(tokens, logps, lengths, n)

    def _completions(
        self, tokens: torch.Tensor, logps: torch.Tensor, lengths: torch.Tensor, n: int
    ) -> list[list[Completion]]:
        eos = self.policy.eos_id
        rows = [
            (toks[:length], lps[:length])
            for toks, lps, length in zip(tokens.tolist(), logps.tolist(), lengths.tolist(), strict=True)
        ]
        done = [bool(toks) and toks[-1] == eos for toks, _ in rows]
        # One tokenizer call for all texts (a fast tokenizer decodes the batch in Rust).
        texts = self.policy.tokenizer.batch_decode(
            [toks[:-1] if fin else toks for (toks, _), fin in zip(rows, done, strict=True)],
            skip_special_tokens=True,
        )
        flat = [
            Completion(text=str(text), token_ids=toks, logprobs=lps, finished=fin)
            for (toks, lps), fin, text in zip(rows, done, texts, strict=True)
        ]
        return [flat[i * n : (i + 1) * n] for i in range(len(flat) // n)]

    def _generate_batch(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        """The ``generate`` engine: transformers' own loop with ``output_logits`` for behaviour log-probs."""
        policy = self.policy
        ids, attn = left_pad(prompts, policy.pad_id, policy.device)
        kwargs: dict[str, object] = {}
        if params.greedy:
            kwargs.update(do_sample=False)
        else:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=0)
        out = policy.model.generate(  # type: ignore[operator]
            input_ids=ids,
            attention_mask=attn,
            max_new_tokens=params.max_new_tokens,
            eos_token_id=policy.eos_id,
            pad_token_id=policy.pad_id,
            return_dict_in_generate=True,
            output_logits=True,
            **kwargs,
        )
        new = out.sequences[:, ids.shape[1] :]
        logits = torch.stack(out.logits, dim=1).float()  # [B, T, V], raw (before temperature/top-p)
        logps = torch.log_softmax(logits, dim=-1).gather(-1, new.unsqueeze(-1)).squeeze(-1)
        new_l, logps_l = new.tolist(), logps.tolist()
        completions = []
        for toks, lps in zip(new_l, logps_l, strict=True):
            finished = policy.eos_id in toks
            cut = toks.index(policy.eos_id) + 1 if finished else len(toks)
            text_ids = toks[: cut - 1] if finished else toks[:cut]
            text = str(policy.tokenizer.decode(text_ids, skip_special_tokens=True))
            completions.append(
                Completion(text=text, token_ids=toks[:cut], logprobs=lps[:cut], finished=finished)
            )
        return completions


def build_generator(backend: str, policy: Policy) -> Generator:
    if backend == "hf":
        return HFGenerator(policy)
    if backend == "vllm":
        from swarmrl.trainer.vllm_backend import VLLMGenerator

        return VLLMGenerator(policy)
    raise InvalidValue(f"unknown generation backend '{backend}'")
