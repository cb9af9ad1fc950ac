"""Pure text rewards and helpers (docs/rewards.md sections 11, 12, 17): format regexes, RPR, answer
extraction, majority vote, normalised answer equivalence, length rewards. Regexes and phrase lists are data
quoted from the spec.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from fractions import Fraction

from swarmrl.tasks.extract import boxed

# --- section 17.3: format ---------------------------------------------------------------------------------

TRL_THINK = re.compile(r"^<think>(?!.*<think>)(.*?)</think>.*$", re.DOTALL | re.MULTILINE)
OPEN_R1_FORMAT = re.compile(r"^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$", re.DOTALL | re.MULTILINE)
RLPR_FULL = re.compile(r"<think>.*</think>.*<answer>.*</answer>.*", re.DOTALL)
REASONING_STEPS = re.compile(r"(Step \d+:|^\d+\.|\n-|\n\*|First,|Second,|Next,|Finally,)", re.MULTILINE)
TAGS = ("<think>", "</think>", "<answer>", "</answer>")


def think_format(text: str) -> float:
    """TRL ``think_format_reward``."""
    return 1.0 if TRL_THINK.match(text) else 0.0


def r1_format(text: str, strict_end: bool = False) -> float:
    """open-r1 ``format_reward``; ``strict_end`` rejects text after ``</answer>`` (the MULTILINE ``$`` pitfall)."""
    m = OPEN_R1_FORMAT.match(text)
    if m is None:
        return 0.0
    return 1.0 if not strict_end or m.end() == len(text) else 0.0


def tag_count(text: str) -> float:
    """open-r1 ``tag_count_reward``: 0.25 for each of the four newline-delimited tags occurring exactly once."""
    parts = ("<think>\n", "\n</think>\n", "\n<answer>\n", "\n</answer>")
    return sum(0.25 for p in parts if text.count(p) == 1)


def rlpr_format(text: str) -> float:
    """RLPR R1 mode: each tag exactly once and a full match of ``<think>.*</think>.*<answer>.*</answer>.*``."""
    if any(text.count(t) != 1 for t in TAGS):
        return 0.0
    return 1.0 if RLPR_FULL.fullmatch(text) else 0.0


def reasoning_steps(text: str) -> float:
    """open-r1 ``reasoning_steps_reward``: ``min(1, count / 3)``."""
    return min(1.0, len(REASONING_STEPS.findall(text)) / 3.0)


# --- answers ----------------------------------------------------------------------------------------------


def boxed_answer(text: str) -> str:
    """Content of the last ``\\boxed{...}`` (balanced braces), '' if none (the task extractor's parser)."""
    return boxed(text) or ""


def majority_vote(answers: Sequence[str]) -> str:
    """Most frequent non-empty answer; ties go to the first-seen answer; '' if none."""
    counts: dict[str, int] = {}
    for a in answers:
        if a:
            counts[a] = counts.get(a, 0) + 1
    best, best_n = "", 0
    for a, n in counts.items():
        if n > best_n:
            best, best_n = a, n
    return best


def normalize_answer(text: str) -> str:
    """Lower-case, strip ``$``, spaces, a trailing period and ``\\text{}``/``\\left``/``\\right`` wrappers."""
    s = text.strip().strip("$").strip()
    s = re.sub(r"\\text\{([^}]*)\}", r"\1", s)
    s = s.replace("\\left", "").replace("\\right", "").replace("\\!", "")
    s = re.sub(r"\s+", "", s).rstrip(".").lower()
    m = re.fullmatch(r"\\d?frac\{(-?\d+)\}\{(-?\d+)\}", s)
    if m:
        s = f"{m.group(1)}/{m.group(2)}"
    return s


def _number(s: str) -> Fraction | None:
    try:
        return Fraction(s.replace(",", ""))
    except (ValueError, ZeroDivisionError):
        return None


def answers_equivalent(predicted: str, gold: str) -> bool:
    """Normalised string equality, or equal rational values (``1/2`` == ``0.5``)."""
    a, b = normalize_answer(predicted), normalize_answer(gold)
    if a == b and a:
        return True
    x, y = _number(a), _number(b)
    return x is not None and y is not None and x == y


def parseable(gold: str) -> bool:
    return bool(normalize_answer(gold))


# --- section 11: RPR --------------------------------------------------------------------------------------

RPR_PHRASES = (
    "i need to", "we need to", "wait", "alternatively", "let me check", "let me see", "let's focus on",
    "we know that", "we can observe ", "we can see ", "let me try", "let's try", "let us try", "first, ",
    "firstly, ", "next, ", "finally, ", "let us first", "let's first", "let me first", "try again",
    "still not", "not working", "not correct", "does not work", "doesn't work", "makes sence", "since we ",
    "because we ", "consequently", "as a result", "thus", "therefore", "hence", "so that", "thereby",
    "if we", "given there ", "for instance ", "for example ",
)  # fmt: skip


def rep_ngram(text: str, n: int = 20) -> float:
    """Distinct word n-grams occurring more than once / number of word n-grams (0 when there are none)."""
    words = text.split()
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    counts: dict[tuple[str, ...], int] = {}
    for g in grams:
        counts[g] = counts.get(g, 0) + 1
    return sum(1 for c in counts.values() if c > 1) / len(grams)


def rpr(text: str, count_user: bool = True) -> float:
    """``max(0, min(1, phrases_present / 20) - rep20 - n_user)`` on the lower-cased text."""
    s = text.lower()
    count = sum(1 for p in RPR_PHRASES if p in s)
    penalty = rep_ngram(s, 20) + (s.count("user: ") if count_user else 0)
    return max(0.0, min(1.0, count / 20.0) - penalty)


# --- section 17.2: length ---------------------------------------------------------------------------------


def dapo_overlong(length: int, max_len: int, cache: int) -> float:
    """DAPO soft overlong punishment: 0, then linear to -1 over the last ``cache`` tokens, then -1."""
    if length <= max_len - cache:
        return 0.0
    if length <= max_len:
        return ((max_len - cache) - length) / cache
    return -1.0


def cosine_scaled(
    length: int,
    correct: bool,
    max_len: int = 1000,
    min_wrong: float = -1.0,
    max_wrong: float = -0.5,
    min_correct: float = 0.5,
    max_correct: float = 1.0,
) -> float:
    """open-r1 cosine-scaled reward: short correct answers score highest, short wrong ones lowest."""
    c = math.cos(math.pi * length / max_len)
    if correct:
        lo, hi = min_correct, max_correct
    else:
        lo, hi = max_wrong, min_wrong
    return lo + 0.5 * (hi - lo) * (1.0 + c)


def kimi_length(correct: Sequence[bool], lengths: Sequence[int]) -> list[float]:
    """Kimi-1.5 group length reward; min/max are taken over THIS group only (open-r1 pitfall)."""
    if not lengths:
        return []
    lo, hi = min(lengths), max(lengths)
    if hi == lo:
        return [0.0] * len(lengths)
    out = []
    for c, n in zip(correct, lengths, strict=True):
        lam = 0.5 - (n - lo) / (hi - lo)
        out.append(lam if c else min(0.0, lam))
    return out
