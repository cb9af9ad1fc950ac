"""Regenerate ``code_tiny.jsonl``, the project's own small code dataset (``python make_code_tiny.py``).

Each row is one tiny Python function to write from two input/output examples: the prompt shows the examples
and the function header, the completion is the expression after ``return`` (a few characters, which the
embedded character-level model can be warm-started on), and ``tests`` are hidden checks on other inputs
(zero, negatives, larger values) so that near-miss solutions pass some tests and not others.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HIDDEN = (0, -3, 7, 12)


def _families() -> list[tuple[str, str]]:
    """(name, expression in x) for every function of the dataset."""
    out: list[tuple[str, str]] = []
    out += [(f"add{k}", f"x+{k}") for k in range(1, 10)]
    out += [(f"sub{k}", f"x-{k}") for k in range(1, 10)]
    out += [(f"mul{k}", f"x*{k}") for k in range(2, 10)]
    out += [(f"rsub{k}", f"{k}-x") for k in range(1, 10)]
    out += [(f"mod{k}", f"x%{k}") for k in range(2, 8)]
    out += [(f"div{k}", f"x//{k}") for k in range(2, 6)]
    out += [(f"max{k}", f"max(x,{k})") for k in range(0, 6)]
    out += [(f"min{k}", f"min(x,{k})") for k in range(0, 6)]
    out += [(f"sqadd{k}", f"x*x+{k}") for k in range(1, 6)]
    out += [("square", "x*x"), ("neg", "-x"), ("abs", "abs(x)"), ("double1", "x*2+1"), ("ident", "x")]
    return out


def rows(per_function: int = 3, seed: int = 7) -> list[dict[str, object]]:
    rng = random.Random(seed)
    out: list[dict[str, object]] = []
    for name, expr in _families():
        fn = eval(f"lambda x: {expr}")  # noqa: S307 - our own constant expressions
        for _ in range(per_function):
            a, b = rng.sample(range(1, 10), 2)
            prompt = f"f({a})={fn(a)} f({b})={fn(b)}\nreturn "
            out.append(
                {
                    "name": name,
                    "question": prompt,
                    "prefix": "def f(x):\n    return ",
                    "solution": expr,
                    "tests": [f"f({x}) == {fn(x)}" for x in dict.fromkeys((a, b, *HIDDEN))],
                }
            )
    rng.shuffle(out)
    return out


if __name__ == "__main__":
    path = Path(__file__).with_name("code_tiny.jsonl")
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows()))
    print(f"wrote {path}")
