"""Per-token character offsets of a completion, for exact placement of step rewards on tokens.

``Sample.extras["token_offsets"]`` (see :mod:`swarmrl.rewards.segment`) holds one ``(start, end)`` character
span of the completion text per completion token. Special tokens (the closing EOS) get an empty span at the
end of the text. The tokenizer is duck-typed (a Hugging Face tokenizer), so this module needs no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Offsets = list[tuple[int, int]]


def _fast_offsets(tokenizer: Any, text: str, ids: list[int]) -> Offsets | None:
    """Offsets from the tokenizer's own offset mapping, when re-encoding the text gives the same ids."""
    if not getattr(tokenizer, "is_fast", False):
        return None
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except (NotImplementedError, TypeError, ValueError):
        return None
    if [int(i) for i in enc["input_ids"]] != ids:
        return None
    return [(int(a), int(b)) for a, b in enc["offset_mapping"]]


def _incremental_offsets(tokenizer: Any, text: str, ids: list[int]) -> Offsets | None:
    """Offsets by decoding growing prefixes: token k covers the text its decoding added.

    Quadratic in the length, so used only when the fast path cannot reproduce the ids. A token that adds
    no text (part of a multi-byte character) gets an empty span; None when the decoding is not prefix-stable.
    """
    out: Offsets = []
    prev = ""
    for k in range(len(ids)):
        cur = str(tokenizer.decode(ids[: k + 1], skip_special_tokens=True))
        if not cur.startswith(prev):
            return None
        out.append((len(prev), len(cur)))
        prev = cur
    return out if prev == text else None


def token_offsets(tokenizer: Any, text: str, completion_ids: Sequence[int]) -> Offsets | None:
    """One ``(start, end)`` span of ``text`` per id in ``completion_ids`` (None when they do not line up).

    Trailing special tokens (EOS) get ``(len(text), len(text))``.
    """
    ids = [int(i) for i in completion_ids]
    special = {int(i) for i in getattr(tokenizer, "all_special_ids", [])}
    body = list(ids)
    while body and body[-1] in special:
        body.pop()
    if not body:
        return [(len(text), len(text))] * len(ids) if not text else None
    spans = _fast_offsets(tokenizer, text, body) or _incremental_offsets(tokenizer, text, body)
    if spans is None:
        return None
    return spans + [(len(text), len(text))] * (len(ids) - len(body))
