"""Step segmentation: one configurable rule used both to score steps and to place step rewards on tokens.

docs/rewards.md section 2, pitfall (iii): the segmentation used by a process reward (PRM scoring, step
matching) must be identical to the one used to put its rewards on tokens. The pipeline therefore segments
every completion once with its ``Segmenter`` and writes the step texts into ``Sample.steps``; modules read
``Sample.steps`` and anything that needs positions calls :func:`locate` on the same texts.

Token placement: a step's reward goes on the token holding the step's last character. Exact positions need
the tokenizer's character offsets, which the trainer passes as ``Sample.extras["token_offsets"]`` (one
``(start, end)`` character span per completion token). Without offsets the position is estimated
proportionally (exact for character-level tokenizers).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from swarmrl.errors import RewardError

TOKEN_OFFSETS = "token_offsets"
"""``Sample.extras`` key for per-token ``(start_char, end_char)`` offsets into the completion text."""

DEFAULT_PATTERN = r";|\n\s*\n"
"""Default split: ``;`` (the ``multistep`` task's partial results) or a blank line (R1/PURE-style steps)."""

Rule = Literal["regex", "separator", "lines", "none"]


@dataclass(frozen=True)
class Span:
    """One step: its stripped text and ``[start, end)`` character span in the completion."""

    text: str
    start: int
    end: int


@dataclass(frozen=True)
class Segmenter:
    """Splits a completion into steps.

    ``rule``: ``regex`` (split on ``pattern``), ``separator`` (split on the literal ``separator``), ``lines``
    (one step per non-empty line) or ``none`` (the whole completion is one step). ``region``: ``all`` or
    ``answer`` (only the text inside ``<answer>...</answer>`` is segmented when the tags are present).
    Empty pieces are dropped; step texts are stripped.
    """

    rule: Rule = "regex"
    pattern: str = DEFAULT_PATTERN
    separator: str = "\n\n"
    region: Literal["all", "answer"] = "all"

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> Segmenter:
        cfg = dict(config or {})
        unknown = set(cfg) - {"rule", "pattern", "separator", "region"}
        if unknown:
            raise RewardError(
                f"unknown segment options {sorted(unknown)}; use rule, pattern, separator, region"
            )
        if cfg.get("rule", "regex") not in ("regex", "separator", "lines", "none"):
            raise RewardError(f"segment.rule must be regex, separator, lines or none, not {cfg['rule']!r}")
        if cfg.get("region", "all") not in ("all", "answer"):
            raise RewardError("segment.region must be 'all' or 'answer'")
        if cfg.get("rule") == "separator" and not cfg.get("separator", "x"):
            raise RewardError("segment.separator must be a non-empty string")
        try:
            re.compile(cfg.get("pattern", DEFAULT_PATTERN))
        except re.error as exc:
            raise RewardError(f"segment.pattern is not a valid regex: {exc}") from exc
        return cls(**cfg)

    def _region(self, text: str) -> tuple[int, int]:
        if self.region == "answer":
            start = text.find("<answer>")
            if start >= 0:
                end = text.find("</answer>", start)
                if end >= 0:
                    return start + len("<answer>"), end
        return 0, len(text)

    def split(self, text: str) -> list[Span]:
        lo, hi = self._region(text)
        if self.rule == "none":
            cuts = [(lo, hi)]
        else:
            if self.rule == "regex":
                regex = re.compile(self.pattern)
            elif self.rule == "lines":
                regex = re.compile(r"\n")
            else:
                regex = re.compile(re.escape(self.separator))
            cuts, pos = [], lo
            for m in regex.finditer(text, lo, hi):
                if m.end() == m.start():
                    continue
                cuts.append((pos, m.start()))
                pos = m.end()
            cuts.append((pos, hi))
        spans = []
        for a, b in cuts:
            piece = text[a:b]
            stripped = piece.strip()
            if stripped:
                start = a + (len(piece) - len(piece.lstrip()))
                spans.append(Span(stripped, start, start + len(stripped)))
        return spans

    def steps(self, text: str) -> list[str]:
        return [s.text for s in self.split(text)]


def locate(text: str, steps: Sequence[str]) -> list[Span]:
    """Character spans of already-segmented ``steps`` in ``text``, searched left to right.

    Raises when a step is not found, because placing its reward anywhere else would silently break the
    "same segmentation for scoring and placement" rule.
    """
    spans, cursor = [], 0
    for step in steps:
        needle = step.strip()
        at = text.find(needle, cursor)
        if at < 0 or not needle:
            raise RewardError(
                f"step {needle[:40]!r} is not in the completion after position {cursor}; "
                "Sample.steps must come from the completion text (use the pipeline's segmenter)"
            )
        spans.append(Span(needle, at, at + len(needle)))
        cursor = at + len(needle)
    return spans


def token_index(char_end: int, text_len: int, n_tokens: int, offsets: Sequence[Sequence[int]] | None) -> int:
    """Index of the token holding character ``char_end - 1`` (the step's last character)."""
    if n_tokens <= 0:
        raise RewardError("cannot place a step reward on a completion with no tokens")
    last_char = max(0, char_end - 1)
    if offsets is not None:
        if len(offsets) != n_tokens:
            raise RewardError(f"token_offsets has {len(offsets)} entries for {n_tokens} tokens")
        for i, (start, end) in enumerate(offsets):
            if start <= last_char < end:
                return i
        # A character with no token (e.g. stripped special text): the last token starting at or before it.
        before = [i for i, (start, _) in enumerate(offsets) if start <= last_char]
        return before[-1] if before else 0
    if text_len <= 0:
        return n_tokens - 1
    return min(n_tokens - 1, (last_char * n_tokens) // text_len)


def step_token_ends(
    text: str, steps: Sequence[str], n_tokens: int, offsets: Sequence[Sequence[int]] | None = None
) -> list[int]:
    """Token index of each step's last token (non-decreasing)."""
    spans = locate(text, steps)
    return [token_index(s.end, len(text), n_tokens, offsets) for s in spans]
