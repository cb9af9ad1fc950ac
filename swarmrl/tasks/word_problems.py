"""The project's example dataset: short arithmetic word problems with GSM8K-style solutions.

``python -m swarmrl.tasks.word_problems --out examples/data/word_problems.jsonl`` writes the committed file
(the same bytes for the same ``--rows`` and ``--seed``). Each line is
``{"question": "...", "solution": "3 + 4 = 7\\n#### 7"}``; train on it with a ``dataset`` task source,
``answer_field: solution`` and ``extract: gsm8k`` (see ``examples/word-problems.yaml``).
Questions are short and use printable ASCII only, so the embedded character-level model can read them.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from swarmrl.tasks.base import item_rng

NAMES = ("Ann", "Ben", "Cleo", "Dan", "Eva", "Finn", "Gus", "Ida", "Jo", "Kim", "Leo", "Mia")
ITEMS = ("apple", "pencil", "marble", "book", "card", "coin", "shell", "stamp", "egg", "cup")

#: (template, op, (a range, b range)); ``{n}``/``{m}`` are names, ``{x}`` an item (plural), ``{a}``/``{b}`` numbers.
TEMPLATES: tuple[tuple[str, str, tuple[int, int], tuple[int, int]], ...] = (
    ("{n} has {a} {x} and gets {b} more. How many {x} now?", "+", (1, 9), (1, 9)),
    ("{n} has {a} {x}. {m} has {b} more than {n}. How many {x} has {m}?", "+", (1, 9), (1, 9)),
    ("{n} had {a} {x} and gave {b} to {m}. How many {x} are left?", "-", (5, 18), (1, 5)),
    ("{n} buys {a} bags with {b} {x} each. How many {x}?", "*", (2, 9), (2, 9)),
    ("{n} has {a} {x}, {m} has {b}. How many {x} in all?", "+", (1, 9), (1, 9)),
)

_OPS: dict[str, Callable[[int, int], int]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
}


def problem(index: int, seed: int) -> dict[str, Any]:
    """Row ``index`` of the dataset for ``seed``: the same on every machine."""
    rng = item_rng("word_problems", seed, index)
    template, op, a_range, b_range = TEMPLATES[rng.randrange(len(TEMPLATES))]
    a, b = rng.randint(*a_range), rng.randint(*b_range)
    n, m = rng.sample(NAMES, 2)
    item = rng.choice(ITEMS) + "s"
    value = _OPS[op](a, b)
    question = template.format(n=n, m=m, x=item, a=a, b=b)
    return {"question": question, "solution": f"{a} {op} {b} = {value}\n#### {value}"}


def generate(rows: int, seed: int) -> list[dict[str, Any]]:
    return [problem(i, seed) for i in range(rows)]


def write_jsonl(path: Path, rows: int = 1000, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in generate(rows, seed))
    path.write_text(text, encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("examples/data/word_problems.jsonl"))
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(write_jsonl(args.out, args.rows, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
