"""The trainer's side of the reward pipeline's ``PolicyScorer``: log-probs and samples from the node's policy.

Model-based reward modules (likelihood / VeriFree / RLPR, IGPO, PRIME, progress rewards, Co-Reward
paraphrases) never touch torch; they call this handle, which the node binds with
``RewardPipeline.bind_scorer`` (docs/rewards.md SAPO requirement 3: always the *receiving* node's model).

Prompts go through :func:`swarmrl.trainer.prompts.prompt_ids`, exactly as for generation and training, so a
log-prob here is the log-prob the learner would compute for the same text. The reference model is the
learner's KL reference when ``trainer.kl_coef > 0``, otherwise a frozen copy of the policy taken when the
scorer is built (before any resume or update), made only when a module asks for reference log-probs.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from swarmrl.errors import RewardError
from swarmrl.trainer.auxmodels import AuxModels
from swarmrl.trainer.generation import Generator, SamplingParams
from swarmrl.trainer.grpo import selective_log_softmax
from swarmrl.trainer.policy import Policy
from swarmrl.trainer.prompts import prompt_ids

if TYPE_CHECKING:
    from swarmrl.rewards.pipeline import RewardPipeline
    from swarmrl.trainer.learner import Learner


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    """An eval-mode copy of ``model`` with gradients off (the reference policy)."""
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


class TrainerScorer:
    """``PolicyScorer`` (and ``TokenScorer``) over a :class:`Policy` and the node's generator.

    ``sampling`` is used by :meth:`sample` (``n`` is overridden per call); ``micro_batch`` bounds the
    sequences per forward pass.
    """

    def __init__(
        self,
        policy: Policy,
        generator: Generator,
        reference: torch.nn.Module | None = None,
        sampling: SamplingParams | None = None,
        micro_batch: int = 64,
    ) -> None:
        if micro_batch < 1:
            raise RewardError("scorer micro_batch must be >= 1")
        self.policy = policy
        self.generator = generator
        self.reference = reference
        self.sampling = sampling or SamplingParams()
        self.micro_batch = micro_batch
        self.aux = AuxModels(policy, micro_batch)

    # -- tokenisation ---------------------------------------------------------------------------------
    def _text_ids(self, text: str) -> list[int]:
        if not text:
            return []
        return [int(i) for i in self.policy.tokenizer(text, add_special_tokens=False)["input_ids"]]

    def continuation_ids(self, prefix: str, completion: str) -> tuple[list[int], list[int]]:
        """(prefix ids, completion ids) with the completion tokenised as it follows the prefix.

        The joint text is tokenised once; when its ids start with the prefix's own ids the rest is the
        completion (merges across the boundary are respected), otherwise both are tokenised separately.
        """
        pre = self._text_ids(prefix)
        if not prefix:
            return pre, self._text_ids(completion)
        joint = self._text_ids(prefix + completion)
        if joint[: len(pre)] == pre:
            return pre, joint[len(pre) :]
        return pre, self._text_ids(completion)

    # -- log-probs ------------------------------------------------------------------------------------
    def _model(self, reference: bool) -> torch.nn.Module:
        if not reference:
            return self.policy.model
        if self.reference is None:
            raise RewardError(
                "reference log-probs requested but the scorer has no reference model; build it with "
                "attach_scorer (copies the policy when a module needs one) or set trainer.kl_coef > 0"
            )
        return self.reference

    @torch.inference_mode()
    def _score(self, model: torch.nn.Module, rows: list[tuple[list[int], list[int]]]) -> list[list[float]]:
        """Log-prob of every completion token given its context, for (context ids, completion ids) rows."""
        out: list[list[float]] = [[] for _ in rows]
        todo = [i for i, (ctx, comp) in enumerate(rows) if comp]
        was_training = model.training
        model.eval()
        try:
            for start in range(0, len(todo), self.micro_batch):
                idx = todo[start : start + self.micro_batch]
                width = max(len(rows[i][0]) + len(rows[i][1]) for i in idx)
                ids = torch.full((len(idx), width), self.policy.pad_id, dtype=torch.long)
                attn = torch.zeros((len(idx), width), dtype=torch.long)
                for r, i in enumerate(idx):
                    seq = rows[i][0] + rows[i][1]
                    ids[r, : len(seq)] = torch.tensor(seq, dtype=torch.long)
                    attn[r, : len(seq)] = 1
                ids, attn = ids.to(self.policy.device), attn.to(self.policy.device)
                logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1]
                logps = selective_log_softmax(logits, ids[:, 1:])
                for r, i in enumerate(idx):
                    ctx, comp = rows[i]
                    out[i] = [float(x) for x in logps[r, len(ctx) - 1 : len(ctx) + len(comp) - 1].tolist()]
        finally:
            if was_training:
                model.train()
        return out

    def _text_rows(
        self, prompts: Sequence[str], completions: Sequence[str], prefixes: Sequence[str] | None
    ) -> list[tuple[list[int], list[int]]]:
        if len(prompts) != len(completions) or (prefixes is not None and len(prefixes) != len(prompts)):
            raise RewardError(
                f"scorer needs as many prompts ({len(prompts)}), completions ({len(completions)}) and "
                f"prefixes ({'-' if prefixes is None else len(prefixes)})"
            )
        rows = []
        for k, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
            pre, comp = self.continuation_ids(prefixes[k] if prefixes is not None else "", completion)
            rows.append((prompt_ids(self.policy.tokenizer, prompt) + pre, comp))
        return rows

    def logprobs(
        self, prompts: Sequence[str], completions: Sequence[str], prefixes: Sequence[str] | None = None
    ) -> list[list[float]]:
        """Per-token log-probs of ``completions`` after prompt + prefix under the current policy."""
        return self._score(self._model(False), self._text_rows(prompts, completions, prefixes))

    def ref_logprobs(
        self, prompts: Sequence[str], completions: Sequence[str], prefixes: Sequence[str] | None = None
    ) -> list[list[float]]:
        """The same under the frozen reference."""
        return self._score(self._model(True), self._text_rows(prompts, completions, prefixes))

    def token_logprobs(
        self, prompts: Sequence[str], completion_ids: Sequence[Sequence[int]], reference: bool = False
    ) -> list[list[float]]:
        """Log-probs of exact completion token ids (EOS included), as the learner computes them."""
        if len(prompts) != len(completion_ids):
            raise RewardError(f"scorer got {len(prompts)} prompts for {len(completion_ids)} completions")
        rows = [
            (prompt_ids(self.policy.tokenizer, p), [int(t) for t in ids])
            for p, ids in zip(prompts, completion_ids, strict=True)
        ]
        return self._score(self._model(reference), rows)

    # -- sampling -------------------------------------------------------------------------------------
    def sample(
        self, prompts: Sequence[str], n: int, prefixes: Sequence[str] | None = None
    ) -> list[list[str]]:
        """``n`` sampled continuations (text after the prefix) per (prompt, prefix) from the current policy."""
        if n < 1:
            raise RewardError("scorer.sample needs n >= 1")
        if prefixes is not None and len(prefixes) != len(prompts):
            raise RewardError(f"scorer got {len(prompts)} prompts for {len(prefixes)} prefixes")
        if not prompts:
            return []
        contexts = [
            prompt_ids(self.policy.tokenizer, p) + self._text_ids(prefixes[k] if prefixes is not None else "")
            for k, p in enumerate(prompts)
        ]
        s = self.sampling
        params = SamplingParams(n, s.temperature, s.top_p, s.max_new_tokens, False)
        return [[c.text for c in comps] for comps in self.generator.generate(contexts, params)]

    # -- trainable helper models (OPRL online PRM, TVM value head) ------------------------------------------
    def prm_token_logprobs(
        self, key: str, prompts: Sequence[str], completion_ids: Sequence[Sequence[int]]
    ) -> list[list[float]]:
        """Log-probs of exact completion ids under the online PRM ``key`` (``OnlinePRMScorer``)."""
        return self.aux.prm_token_logprobs(key, prompts, completion_ids)

    def prm_dpo_step(
        self, key: str, pairs: Sequence[tuple[str, Sequence[int], Sequence[int]]], beta: float, lr: float
    ) -> float:
        """One trajectory-DPO step of the online PRM ``key`` against the current policy as pi_old."""
        return self.aux.prm_dpo_step(key, pairs, beta, lr)

    def token_values(
        self, key: str, prompts: Sequence[str], completion_ids: Sequence[Sequence[int]]
    ) -> list[list[float]]:
        """``V(s_t)`` of the value head ``key`` before each completion token (``ValueScorer``)."""
        return self.aux.token_values(key, prompts, completion_ids)

    def fit_values(
        self,
        key: str,
        prompts: Sequence[str],
        completion_ids: Sequence[Sequence[int]],
        targets: Sequence[Sequence[float]],
        lr: float,
    ) -> float:
        """One per-token BCE step of the value head ``key``."""
        return self.aux.fit_values(key, prompts, completion_ids, targets, lr)

    def state_dict(self) -> dict[str, object]:
        """The helper models' weights and optimiser states (part of the node checkpoint)."""
        return self.aux.state_dict()

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.aux.load_state_dict(state)  # type: ignore[arg-type]


def attach_scorer(
    pipeline: RewardPipeline,
    policy: Policy,
    generator: Generator,
    learner: Learner | None = None,
    sampling: SamplingParams | None = None,
    micro_batch: int = 64,
) -> TrainerScorer | None:
    """Bind a :class:`TrainerScorer` to ``pipeline`` when a module needs the policy; None otherwise.

    Call it right after loading the policy (before resuming from a checkpoint) so that a copied reference
    is the starting policy. A learner with a KL reference shares it instead of copying.
    """
    if not pipeline.needs_scorer:
        return None
    reference: torch.nn.Module | None = None
    if pipeline.needs_reference:
        shared = getattr(learner, "reference", None) if learner is not None else None
        reference = shared if shared is not None else frozen_copy(policy.model)
    scorer = TrainerScorer(policy, generator, reference, sampling, micro_batch)
    pipeline.bind_scorer(scorer)
    return scorer
