"""Held-out evaluation: greedy pass@1 and sampled pass@k per task source.

One code path for the node's periodic evaluation (``Node.evaluate``, every ``node.eval_every`` rounds: greedy
only) and ``swarm-node eval`` (greedy and ``samples`` sampled completions per question). The questions are the
held-out indices of every source (``TaskSampler.eval_set``: ``[0, tasks.eval_questions)``, never drawn for
training). A completion is correct when the node's accuracy module (exact match of the extracted answer)
scores it 1. Importing this module needs no torch (the estimator is plain Python).

pass@k uses the unbiased estimator of Chen et al. 2021 ("Evaluating Large Language Models Trained on Code"):
with ``n`` samples of which ``c`` are correct, pass@k = 1 - C(n-c, k) / C(n, k), averaged over questions.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from swarmrl.errors import InvalidValue
from swarmrl.rewards import Sample
from swarmrl.rewards.builtin import ExactMatch
from swarmrl.tasks import Task

if TYPE_CHECKING:
    from swarmrl.trainer.generation import Generator


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples with ``c`` correct: 1 - C(n-c, k) / C(n, k).

    Computed as 1 - prod_{i=n-c+1..n} (1 - k/i), which avoids huge binomials.
    """
    if n < 1 or not 0 <= c <= n or not 1 <= k <= n:
        raise InvalidValue(f"pass@k needs 1 <= k <= n and 0 <= c <= n (got n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def default_ks(samples: int) -> tuple[int, ...]:
    """1, 2, 4, ... up to ``samples``, and ``samples`` itself."""
    if samples < 1:
        return ()
    ks = {1, samples}
    k = 2
    while k < samples:
        ks.add(k)
        k *= 2
    return tuple(sorted(ks))


@dataclass(frozen=True)
class EvalSettings:
    """``samples`` = 0: greedy only. ``ks``: the k of pass@k (each <= samples; default 1, 2, 4, .., samples)."""

    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    samples: int = 0
    ks: tuple[int, ...] = ()

    def resolved_ks(self) -> tuple[int, ...]:
        if self.samples < 1:
            return ()
        ks = self.ks or default_ks(self.samples)
        bad = [k for k in ks if not 1 <= k <= self.samples]
        if bad:
            raise InvalidValue(f"k must be between 1 and the number of samples ({self.samples}), got {bad}")
        return tuple(sorted(set(ks)))


@dataclass
class SourceResult:
    source: str
    questions: int
    greedy_pass_at_1: float
    pass_at_k: dict[int, float] = field(default_factory=dict)


@dataclass
class QuestionResult:
    source: str
    index: int
    question: str
    answer: str
    greedy: str
    greedy_correct: bool
    sampled_correct: int | None = None


@dataclass
class EvalResult:
    sources: list[SourceResult]
    overall: SourceResult
    samples: int
    ks: tuple[int, ...]
    settings: dict[str, Any]
    questions: list[QuestionResult]

    @property
    def greedy_accuracy(self) -> float:
        return self.overall.greedy_pass_at_1

    def by_source(self) -> dict[str, float]:
        """Greedy pass@1 per source (the journal's per-source evaluation record)."""
        return {s.source: s.greedy_pass_at_1 for s in self.sources}

    def as_dict(self) -> dict[str, Any]:
        def src(s: SourceResult) -> dict[str, Any]:
            out: dict[str, Any] = {
                "source": s.source,
                "questions": s.questions,
                "greedy_pass@1": s.greedy_pass_at_1,
            }
            out.update({f"pass@{k}": v for k, v in s.pass_at_k.items()})
            return out

        return {
            "settings": {**self.settings, "samples": self.samples, "ks": list(self.ks)},
            "sources": [src(s) for s in self.sources],
            "overall": src(self.overall),
            "questions": [asdict(q) for q in self.questions],
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2) + "\n"

    def table(self) -> str:
        """A markdown table: one row per source and one for all of them."""
        head = ["source", "questions", "greedy pass@1", *(f"pass@{k}" for k in self.ks)]
        rows = [
            [
                s.source,
                str(s.questions),
                f"{s.greedy_pass_at_1:.3f}",
                *(f"{s.pass_at_k[k]:.3f}" for k in self.ks),
            ]
            for s in [*self.sources, self.overall]
        ]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)


def source_key(task: Task) -> str:
    return f"{task.ref.source}/{task.ref.dataset}"


def _correct(task: Task, texts: Sequence[str]) -> list[bool]:
    """The node's accuracy (exact match of the extracted answer, as ``RewardPipeline`` reports it)."""
    samples = [Sample(prompt=task.question, completion=t, answer=task.answer, task=task.ref) for t in texts]
    return [float(o.scalar or 0.0) >= 1.0 for o in ExactMatch().score_group(samples)]


def _summary(name: str, rows: list[QuestionResult], samples: int, ks: tuple[int, ...]) -> SourceResult:
    greedy = statistics.fmean(float(r.greedy_correct) for r in rows) if rows else float("nan")
    pass_k = {
        k: statistics.fmean(pass_at_k(samples, int(r.sampled_correct or 0), k) for r in rows)
        if rows
        else float("nan")
        for k in ks
    }
    return SourceResult(name, len(rows), greedy, pass_k)


def evaluate_tasks(
    generator: Generator, tokenizer: Any, tasks: Sequence[Task], settings: EvalSettings
) -> EvalResult:
    """Greedy (and with ``settings.samples`` > 0 sampled) completions for ``tasks``, scored per source."""
    from swarmrl.trainer.generation import SamplingParams  # torch: only when generating
    from swarmrl.trainer.prompts import prompts_ids

    ks = settings.resolved_ks()
    prompts = prompts_ids(tokenizer, [t.question for t in tasks])
    greedy = SamplingParams(1, settings.temperature, settings.top_p, settings.max_new_tokens, greedy=True)
    greedy_out = generator.generate(prompts, greedy) if prompts else []
    sampled_out: list[Any] = [None] * len(tasks)
    if settings.samples > 0 and prompts:
        params = SamplingParams(
            settings.samples, settings.temperature, settings.top_p, settings.max_new_tokens
        )
        sampled_out = generator.generate(prompts, params)
    rows: list[QuestionResult] = []
    for task, g, s in zip(tasks, greedy_out, sampled_out, strict=True):
        text = g[0].text
        rows.append(
            QuestionResult(
                source=source_key(task),
                index=task.ref.index,
                question=task.question,
                answer=task.answer,
                greedy=text,
                greedy_correct=_correct(task, [text])[0],
                sampled_correct=sum(_correct(task, [c.text for c in s])) if s is not None else None,
            )
        )
    names = list(dict.fromkeys(r.source for r in rows))
    per_source = [_summary(n, [r for r in rows if r.source == n], settings.samples, ks) for n in names]
    return EvalResult(
        sources=per_source,
        overall=_summary("all", rows, settings.samples, ks),
        samples=settings.samples,
        ks=ks,
        settings={
            "max_new_tokens": settings.max_new_tokens,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
        },
        questions=rows,
    )
