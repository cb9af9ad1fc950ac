"""The model handle that model-based reward modules receive from the trainer (no torch here).

docs/rewards.md SAPO requirement 3: log-prob rewards must use the *receiving* node's policy, so the trainer
hands its own model to the pipeline with ``RewardPipeline.bind_scorer(scorer)``. Modules look the handle up
with :func:`resolve_scorer` (bound handle first, then ``Sample.extras["policy_scorer"]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from swarmrl.errors import RewardError
from swarmrl.rewards.base import Sample

SCORER_KEY = "policy_scorer"


@runtime_checkable
class PolicyScorer(Protocol):
    """What the trainer implements for likelihood, information-gain, implicit-PRM and progress rewards.

    ``prompts[i]`` is the question exactly as in ``Sample.prompt`` (the scorer applies the same chat template
    as generation); ``prefixes[i]`` (optional, default '') is assistant-side text that follows the templated
    prompt (e.g. the reasoning generated so far); ``completions[i]`` is the text to score after it.

    ``logprobs``: one log-prob per token of ``completions[i]`` (tokenised as it would follow the prefix) under
    the current policy; ``ref_logprobs``: the same under the frozen reference; ``sample``: ``n`` continuations
    of each (prompt, prefix) from the current policy, as text.
    """

    def logprobs(
        self, prompts: Sequence[str], completions: Sequence[str], prefixes: Sequence[str] | None = None
    ) -> list[list[float]]: ...

    def ref_logprobs(
        self, prompts: Sequence[str], completions: Sequence[str], prefixes: Sequence[str] | None = None
    ) -> list[list[float]]: ...

    def sample(
        self, prompts: Sequence[str], n: int, prefixes: Sequence[str] | None = None
    ) -> list[list[str]]: ...


@runtime_checkable
class TokenScorer(Protocol):
    """Optional extension of :class:`PolicyScorer`: log-probs of exact completion token ids.

    Token-level rewards (PRIME) must line up with ``Sample.completion_ids`` (which end with the EOS token of a
    finished completion); re-tokenising the text cannot give that EOS token, so scorers that can should also
    implement this. ``reference`` selects the frozen reference instead of the current policy.
    """

    def token_logprobs(
        self, prompts: Sequence[str], completion_ids: Sequence[Sequence[int]], reference: bool = False
    ) -> list[list[float]]: ...


class ScorerSlot:
    """Mixin for modules that need a model: holds the handle bound by the pipeline."""

    scorer: PolicyScorer | None = None
    needs_reference: bool = False
    """True when the module calls ``ref_logprobs`` (the trainer then keeps a frozen reference copy)."""

    def bind_scorer(self, scorer: PolicyScorer | None) -> None:
        self.scorer = scorer

    def resolve(self, group: Sequence[Sample], who: str) -> PolicyScorer:
        return resolve_scorer(self.scorer, group, who)


def resolve_scorer(bound: PolicyScorer | None, group: Sequence[Sample], who: str) -> PolicyScorer:
    if bound is not None:
        return bound
    for s in group:
        handle = s.extras.get(SCORER_KEY)
        if handle is not None:
            if not isinstance(handle, PolicyScorer):
                raise RewardError(f"Sample.extras['{SCORER_KEY}'] does not implement PolicyScorer")
            return handle
    raise RewardError(
        f"reward '{who}' needs the policy: call RewardPipeline.bind_scorer(scorer) from the trainer "
        f"or put a PolicyScorer in Sample.extras['{SCORER_KEY}']"
    )


@runtime_checkable
class OnlinePRMScorer(Protocol):
    """Optional extension: an implicit PRM trained online beside the policy (OPRL), owned by the trainer.

    ``key`` names one PRM (a copy of the policy made on first use). ``prm_token_logprobs``: log-probs of the
    exact completion ids under that PRM; ``prm_dpo_step``: one optimiser step of the trajectory DPO loss on
    (chosen, rejected) pairs with the current policy as pi_old; returns the loss. Its state is checkpointed.
    """

    def prm_token_logprobs(
        self, key: str, prompts: Sequence[str], completion_ids: Sequence[Sequence[int]]
    ) -> list[list[float]]: ...

    def prm_dpo_step(
        self,
        key: str,
        pairs: Sequence[tuple[str, Sequence[int], Sequence[int]]],
        beta: float,
        lr: float,
    ) -> float: ...


@runtime_checkable
class ValueScorer(Protocol):
    """Optional extension: a token value head on the policy's hidden states (TVM), owned by the trainer.

    ``token_values``: ``V(s_t)`` in [0, 1] for t = 0 .. T-1 (the state before completion token t);
    ``fit_values``: one optimiser step of per-token binary cross-entropy toward ``targets``; returns the loss.
    """

    def token_values(
        self, key: str, prompts: Sequence[str], completion_ids: Sequence[Sequence[int]]
    ) -> list[list[float]]: ...

    def fit_values(
        self,
        key: str,
        prompts: Sequence[str],
        completion_ids: Sequence[Sequence[int]],
        targets: Sequence[Sequence[float]],
        lr: float,
    ) -> float: ...
