"""The SAPO experiment as a benchmark: ``swarm-node experiment sapo`` with the same flags, then the table.

Runs N real nodes (in-memory transport, or ``--transport libp2p`` on loopback) through every split of the
per-round budget (8/0, 8/0 filtered, 6/2, 4/4, 2/6, 4/4 with the uniform and top_reward samplers, adaptive)
in a sparse and a dense signal regime over paired seeds; see ``swarmrl/apps/experiment.py`` for the design
and ``docs/sapo.md`` for the results.

Usage: ``python benchmarks/sapo.py [--out DIR] [--minutes M | --rounds R] [--seeds N] [--smoke] ...``
(``--help`` lists every flag). Writes ``DIR/sapo-results.json``, ``DIR/sapo-table.md`` and
``DIR/sapo-reward.png``, and prints the table.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from swarmrl.cli import main as cli_main

    sys.argv = ["swarm-node", "experiment", "sapo", *argv]
    try:
        cli_main()
    except SystemExit as exc:
        if exc.code:
            return int(exc.code) if isinstance(exc.code, int) else 1
    out = Path(argv[argv.index("--out") + 1]) if "--out" in argv else Path("sapo-out")
    table = out / "sapo-table.md"
    if table.exists():
        print(table.read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
