"""Regenerate ``code_tiny.jsonl``, the project's own small code dataset (``python make_code_tiny.py``).

Each row is one tiny Python function whose name says what it computes (``add3`` adds 3, ``mul2add5`` doubles
and adds 5, ``max4`` is ``max(x, 4)``): the prompt is its name and argument (``add3(x)=``; short and without blanks, which
the embedded character-level tokenizer drops), the completion is the expression after ``return`` in
``prefix`` (``def add3(x):\n    return ``; a few characters the embedded model can be warm-started on), and
``tests`` check it on inputs that include zero, negatives and larger values, so near misses (``x*2`` for
``x+2``, ``x`` for ``abs(x)``) pass some tests and not others.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

INPUTS = (0, 1, 2, -3, 7, 12)


def families() -> list[tuple[str, str]]:
    """(name, expression in x) for every function of the dataset."""
    out: list[tuple[str, str]] = []
    out += [(f"add{k}", f"x+{k}") for k in range(1, 10)]
    out += [(f"sub{k}", f"x-{k}") for k in range(1, 10)]
    out += [(f"mul{k}", f"x*{k}") for k in range(2, 10)]
    out += [(f"from{k}", f"{k}-x") for k in range(1, 10)]
    out += [(f"mod{k}", f"x%{k}") for k in range(2, 10)]
    out += [(f"div{k}", f"x//{k}") for k in range(2, 10)]
    out += [(f"max{k}", f"max(x,{k})") for k in range(0, 10)]
    out += [(f"min{k}", f"min(x,{k})") for k in range(0, 10)]
    out += [(f"sq{k}", f"x*x+{k}") for k in range(1, 10)]
    out += [(f"mul{a}add{b}", f"x*{a}+{b}") for a in range(2, 6) for b in range(1, 10)]
    out += [("square", "x*x"), ("neg", "-x"), ("abs", "abs(x)"), ("same", "x")]
    return out


def rows(seed: int = 7) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for name, expr in families():
        fn = eval(f"lambda x: {expr}")  # our own constant expressions
        header = f"def {name}(x):\n    return "
        out.append(
            {
                "name": name,
                "question": f"{name}(x)=",
                "prefix": header,
                "solution": expr,
                "tests": [f"{name}({x}) == {fn(x)}" for x in INPUTS],
            }
        )
    random.Random(seed).shuffle(out)
    return out


if __name__ == "__main__":
    path = Path(__file__).with_name("code_tiny.jsonl")
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows()))
    print(f"wrote {path}")
