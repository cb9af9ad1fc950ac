"""Answer extraction for dataset tasks: the gold answer from a dataset column, and the comparison of a
completion's answer with it.

Modes (``extract`` in a ``dataset`` task source's config):

- ``exact``: the stripped text; equal when the stripped texts are equal.
- ``numeric``: a number (``1,000``, ``$7``, ``7.50``, ``-3``, ``1/2``); the gold column must hold one, a
  completion's answer is its last number; equal when the values are equal (``7.0`` == ``7``).
- ``gsm8k``: the text after the last ``####`` (GSM8K's solutions end in ``#### 72``), compared as numbers
  when both sides are numbers, else as stripped text; a completion without ``####`` is read as its last number.
- ``boxed``: the content of the last ``\\boxed{...}`` (balanced braces), else the whole text; compared as
  numbers when both are numbers, else with spaces and ``$`` removed.

Pure Python (no torch, no rewards import): the swarm's receive path regenerates tasks through this package.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Literal

from swarmrl.errors import TaskError

Extract = Literal["exact", "numeric", "gsm8k", "boxed"]
MODES: tuple[str, ...] = ("exact", "numeric", "gsm8k", "boxed")

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")


def parse_number(text: str) -> Fraction | None:
    """The value of ``text`` when it is one number (``$``, ``%``, commas and a trailing period allowed)."""
    s = text.strip().replace(",", "").replace("$", "").rstrip(".").removesuffix("%").strip()
    if not s:
        return None
    try:
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None


def last_number(text: str) -> str:
    """The last number written in ``text`` ('' if none)."""
    found = _NUMBER.findall(text)
    return found[-1] if found else ""


def format_number(value: Fraction) -> str:
    """Canonical text of a number: ``7``, ``-2.5``, ``1/3`` (decimals only when they terminate)."""
    if value.denominator == 1:
        return str(value.numerator)
    den = value.denominator
    while den % 2 == 0:
        den //= 2
    while den % 5 == 0:
        den //= 5
    if den != 1:
        return f"{value.numerator}/{value.denominator}"
    text = f"{float(value):.12f}".rstrip("0").rstrip(".")
    return text


def boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` with balanced braces; None when there is none."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    i = begin = start + len("\\boxed{")
    depth = 1
    while i < len(text):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[begin:i].strip()
        i += 1
    return None


def after_hashes(text: str) -> str | None:
    """Text after the last ``####`` (GSM8K's final-answer marker); None when there is no marker."""
    at = text.rfind("####")
    if at < 0:
        return None
    return text[at + 4 :].strip()


def _loose(text: str) -> str:
    return re.sub(r"\s+", "", text).replace("$", "")


def gold_answer(raw: str, mode: str) -> str:
    """The canonical gold answer of a dataset cell; TaskError when the cell has none in this mode."""
    text = raw.strip()
    if mode == "exact":
        out = text
    elif mode == "numeric":
        value = parse_number(text)
        if value is None:
            raise TaskError(f"answer {raw[:60]!r} is not a number (extract: numeric)")
        out = format_number(value)
    elif mode == "gsm8k":
        tail = after_hashes(text)
        if tail is None:
            raise TaskError(f"answer {raw[:60]!r} has no '####' final-answer marker (extract: gsm8k)")
        value = parse_number(tail)
        out = format_number(value) if value is not None else tail
    elif mode == "boxed":
        inner = boxed(text)
        out = inner if inner is not None else text
    else:
        raise TaskError(f"unknown answer extraction '{mode}'; use one of {', '.join(MODES)}")
    if not out:
        raise TaskError(f"answer {raw[:60]!r} is empty after extraction ({mode})")
    return out


def predicted_answer(text: str, mode: str) -> str:
    """The answer a completion gives, read the way ``mode`` reads a gold answer."""
    if mode == "exact":
        return text.strip()
    if mode == "numeric":
        return last_number(text)
    if mode == "gsm8k":
        tail = after_hashes(text)
        return tail if tail is not None else last_number(text)
    if mode == "boxed":
        inner = boxed(text)
        return inner if inner is not None else text.strip()
    raise TaskError(f"unknown answer extraction '{mode}'; use one of {', '.join(MODES)}")


def matches(prediction: str, gold: str, mode: str) -> bool:
    """Whether a completion's answer text equals the canonical gold answer under ``mode``."""
    pred = predicted_answer(prediction, mode)
    if mode == "exact":
        return pred == gold.strip()
    p_num, g_num = parse_number(pred), parse_number(gold)
    if p_num is not None and g_num is not None:
        return p_num == g_num
    if mode == "numeric":
        return False
    return _loose(pred) == _loose(gold) if pred else False
