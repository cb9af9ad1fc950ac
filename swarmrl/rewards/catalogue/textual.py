"""Text-only modules: R1-style format and accuracy, RPR, and length rewards (DAPO, cosine, Kimi, GRPO-lambda)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Literal

from swarmrl.errors import RewardError
from swarmrl.rewards import text as T
from swarmrl.rewards.base import RewardModule, RewardOutput, Sample, extract_answer
from swarmrl.rewards.catalogue.common import Composite, Spec, build_sub, need, scalars

if TYPE_CHECKING:
    from swarmrl.rewards.registry import Registry


class _TextRule:
    """A 0/1 (or graded) rule applied to each completion's text."""

    name = "text_rule"
    rule: Callable[[str], float] = staticmethod(T.think_format)

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        return [RewardOutput(self.rule(s.completion)) for s in group]


class ThinkFormat(_TextRule):
    """TRL ``think_format_reward`` (CODE-3P): ``^<think>(?!.*<think>)(.*?)</think>.*$``. Breaks when the chat
    template pre-fills ``<think>`` (the completion then starts inside the block)."""

    name = "think_format"
    rule = staticmethod(T.think_format)


class R1Format:
    """open-r1 ``format_reward`` (CODE-3P). ``strict_end`` (default False = open-r1 behaviour) rejects text
    after ``</answer>``, which the MULTILINE ``$`` otherwise lets through."""

    name = "r1_format"

    def __init__(self, strict_end: bool = False) -> None:
        self.strict_end = bool(strict_end)

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        return [RewardOutput(T.r1_format(s.completion, self.strict_end)) for s in group]


class TagCount(_TextRule):
    """open-r1 ``tag_count_reward`` (CODE-3P): 0.25 per newline-delimited tag present exactly once."""

    name = "tag_count"
    rule = staticmethod(T.tag_count)


class RlprFormat(_TextRule):
    """RLPR R1-mode format (CODE): each tag once and a full match of think/answer order."""

    name = "rlpr_format"
    rule = staticmethod(T.rlpr_format)


class ReasoningSteps(_TextRule):
    """open-r1 ``reasoning_steps_reward`` (CODE-3P): ``min(1, #step markers / 3)``."""

    name = "reasoning_steps"
    rule = staticmethod(T.reasoning_steps)


class Accuracy:
    """R1-style rule-based accuracy: the last ``\\boxed{}`` answer, else the ``<answer>`` text, else the
    whole stripped completion, compared with the gold answer by normalised string or rational value.

    Not math_verify (open-r1 uses it; not a dependency here). ``unparseable_gold``: ``skip`` (None, default),
    ``one`` (open-r1's behaviour: silently rewards everything) or ``zero``.
    """

    name = "accuracy"

    def __init__(self, unparseable_gold: Literal["skip", "one", "zero"] = "skip") -> None:
        need(
            unparseable_gold in ("skip", "one", "zero"), "accuracy.unparseable_gold must be skip, one or zero"
        )
        self.unparseable = unparseable_gold

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        out = []
        for s in group:
            if not T.parseable(s.answer):
                out.append(RewardOutput({"skip": None, "one": 1.0, "zero": 0.0}[self.unparseable]))
                continue
            pred = T.boxed_answer(s.completion) or extract_answer(s.completion)
            out.append(RewardOutput(1.0 if T.answers_equivalent(pred, s.answer) else 0.0))
        return out


class Rpr(Composite):
    """Reasoning Pattern Reward (Lv et al., trestad/Noisy-Rewards-in-Learning-to-Reason; CODE).

    ``max(0, min(1, #phrases present / 20) - rep20 - #"user: ")`` over 40 verbatim phrases. ``span``:
    ``all``, ``think`` (inside ``<think>...</think>``) or ``after_marker`` (after ``marker``, located
    explicitly; ``find_quirk`` reproduces the code's ``find + 19`` slice that drops 18 characters when the
    marker is absent). ``include_prompt``: score prompt + completion (the math variant). ``mode``: ``rpr``, or
    ``partial_credit`` (``1`` if ``correct`` else RPR, the ``add_format_reward_when_wrong`` setting).
    ``require_boxed``: 0 when no ``\\boxed{}`` answer. Keep its weight small: it is easy to hack.
    """

    name = "rpr"

    def __init__(
        self,
        registry: Registry,
        span: Literal["all", "think", "after_marker"] = "all",
        marker: str = "Assistant: <think>",
        find_quirk: bool = False,
        include_prompt: bool = False,
        count_user: bool = True,
        require_boxed: bool = False,
        mode: Literal["rpr", "partial_credit"] = "rpr",
        correct: Spec = "accuracy",
    ) -> None:
        need(span in ("all", "think", "after_marker"), "rpr.span must be all, think or after_marker")
        need(mode in ("rpr", "partial_credit"), "rpr.mode must be rpr or partial_credit")
        self.span, self.marker, self.find_quirk = span, marker, bool(find_quirk)
        self.include_prompt, self.count_user, self.require_boxed = include_prompt, count_user, require_boxed
        self.mode = mode
        self.correct = build_sub(registry, correct, "rpr.correct") if mode == "partial_credit" else None

    def children(self) -> Iterator[RewardModule]:
        if self.correct is not None:
            yield self.correct

    def text_of(self, s: Sample) -> str:
        text = (s.prompt + s.completion) if self.include_prompt else s.completion
        if self.span == "think":
            a = text.find("<think>")
            b = text.find("</think>", a + 1)
            if a >= 0 and b >= 0:
                return text[a + len("<think>") : b]
            return text
        if self.span == "after_marker":
            at = text.find(self.marker)
            if self.find_quirk:
                return text[at + 19 :]
            return text[at + len(self.marker) :] if at >= 0 else text
        return text

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        values = []
        for s in group:
            if self.require_boxed and not T.boxed_answer(s.completion):
                values.append(0.0)
            else:
                values.append(T.rpr(self.text_of(s), self.count_user))
        if self.correct is not None:
            ok = scalars(self.correct, group, 0.0)
            values = [1.0 if float(c or 0.0) > 0.5 else v for v, c in zip(values, ok, strict=True)]
        return [RewardOutput(v) for v in values]


class RprCalibration(Composite):
    """RPR calibration of a noisy RM (CODE): ``if r < threshold: r = min(1, r + coef * RPR)`` (0.5, 0.1)."""

    name = "rpr_calibration"

    def __init__(
        self, registry: Registry, of: Spec = "column", threshold: float = 0.5, coef: float = 0.1
    ) -> None:
        self.of = build_sub(registry, of, "rpr_calibration.of")
        self.threshold, self.coef = float(threshold), float(coef)

    def children(self) -> Iterator[RewardModule]:
        yield self.of

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        out = []
        for s, v in zip(group, scalars(self.of, group), strict=True):
            if v is not None and v < self.threshold:
                v = min(1.0, v + self.coef * T.rpr(s.completion))
            out.append(RewardOutput(v))
        return out


def completion_length(s: Sample, unit: str) -> int:
    if unit == "chars":
        return len(s.completion)
    if not s.completion_ids:
        raise RewardError("length in tokens needs Sample.completion_ids (or set unit: chars)")
    return len(s.completion_ids)


class DapoOverlong:
    """DAPO soft overlong punishment (CODE-3P, TRL ``get_soft_overlong_punishment``), length in tokens."""

    name = "dapo_overlong"

    def __init__(
        self, max_len: int = 1024, cache: int = 256, unit: Literal["tokens", "chars"] = "tokens"
    ) -> None:
        need(0 < cache <= max_len, "dapo_overlong needs 0 < cache <= max_len")
        self.max_len, self.cache, self.unit = int(max_len), int(cache), unit

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        return [
            RewardOutput(T.dapo_overlong(completion_length(s, self.unit), self.max_len, self.cache))
            for s in group
        ]


class LinearOverlong:
    """PAR-repo length penalty as an additive term (CODE): ``-coef * (len - limit)`` when ``len > limit``
    (300 tokens, 0.01)."""

    name = "linear_overlong"

    def __init__(
        self, limit: int = 300, coef: float = 0.01, unit: Literal["tokens", "chars"] = "tokens"
    ) -> None:
        self.limit, self.coef, self.unit = int(limit), float(coef), unit

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        out = []
        for s in group:
            n = completion_length(s, self.unit)
            out.append(RewardOutput(-self.coef * (n - self.limit) if n > self.limit else 0.0))
        return out


class CosineLength(Composite):
    """open-r1 cosine-scaled length reward (CODE-3P); correctness from ``correct`` (default ``accuracy``)."""

    name = "cosine_length"

    def __init__(
        self,
        registry: Registry,
        correct: Spec = "accuracy",
        max_len: int = 1000,
        min_wrong: float = -1.0,
        max_wrong: float = -0.5,
        min_correct: float = 0.5,
        max_correct: float = 1.0,
        unit: Literal["tokens", "chars"] = "tokens",
    ) -> None:
        need(max_len > 0, "cosine_length.max_len must be > 0")
        self.correct = build_sub(registry, correct, "cosine_length.correct")
        self.args = (int(max_len), min_wrong, max_wrong, min_correct, max_correct)
        self.unit = unit

    def children(self) -> Iterator[RewardModule]:
        yield self.correct

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        ok = scalars(self.correct, group, 0.0)
        return [
            RewardOutput(T.cosine_scaled(completion_length(s, self.unit), float(c or 0.0) > 0.5, *self.args))
            for s, c in zip(group, ok, strict=True)
        ]


class KimiLength(Composite):
    """Kimi-1.5 group length reward (CODE-3P via open-r1 ``len_reward``), min/max per GROUP (open-r1
    computes them over the whole call batch; we do not)."""

    name = "kimi_length"

    def __init__(
        self, registry: Registry, correct: Spec = "accuracy", unit: Literal["tokens", "chars"] = "tokens"
    ):
        self.correct = build_sub(registry, correct, "kimi_length.correct")
        self.unit = unit

    def children(self) -> Iterator[RewardModule]:
        yield self.correct

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        ok = [float(c or 0.0) > 0.5 for c in scalars(self.correct, group, 0.0)]
        lengths = [completion_length(s, self.unit) for s in group]
        return [RewardOutput(v) for v in T.kimi_length(ok, lengths)]


def grpo_lambda_select(ratios: Sequence[float], lam: float) -> list[bool]:
    """Which groups get the length-penalty reward: the top ``ceil(lam * G)`` by correctness ratio (stable
    order on ties; the rounding and tie rule are UNCONFIRMED)."""
    k = math.ceil(lam * len(ratios) - 1e-9)
    order = sorted(range(len(ratios)), key=lambda i: -ratios[i])
    chosen = set(order[:k])
    return [i in chosen for i in range(len(ratios))]


class GrpoLambda(Composite):
    """GRPO-lambda (Dai, Liu, Si, arXiv 2505.18086; mechanism TEXT/2ND): rank the batch's groups by
    correctness ratio; the top fraction ``lam`` gets the length-penalty reward ``c + w * kimi_len``, the
    rest plain 0/1 correctness. ``lam`` (placeholder 0.5), the LP formula (``w`` 1.0) and tie-breaking are
    UNCONFIRMED. A batch-level module: the pipeline calls ``score_batch`` with all groups of the round, so
    in SAPO the local + external composition changes the selection.
    """

    name = "grpo_lambda"

    def __init__(
        self,
        registry: Registry,
        correct: Spec = "accuracy",
        lam: float = 0.5,
        w: float = 1.0,
        unit: Literal["tokens", "chars"] = "tokens",
    ) -> None:
        need(0.0 <= lam <= 1.0, "grpo_lambda.lam must be in [0, 1]")
        self.correct = build_sub(registry, correct, "grpo_lambda.correct")
        self.lam, self.w, self.unit = float(lam), float(w), unit

    def children(self) -> Iterator[RewardModule]:
        yield self.correct

    def score_batch(self, groups: Sequence[Sequence[Sample]]) -> list[list[RewardOutput]]:
        correct = [[float(c or 0.0) > 0.5 for c in scalars(self.correct, g, 0.0)] for g in groups]
        ratios = [sum(c) / len(c) if c else 0.0 for c in correct]
        use_lp = grpo_lambda_select(ratios, self.lam)
        out = []
        for g, c, lp in zip(groups, correct, use_lp, strict=True):
            base = [1.0 if x else 0.0 for x in c]
            if lp:
                lens = T.kimi_length(c, [completion_length(s, self.unit) for s in g])
                vals = [b + self.w * ln for b, ln in zip(base, lens, strict=True)]
            else:
                vals = base
            out.append([RewardOutput(v, info={"length_penalty": lp}) for v in vals])
        return out

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        return self.score_batch([group])[0]
