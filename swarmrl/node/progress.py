"""A live progress line on a terminal (rich), plain log lines otherwise."""

from __future__ import annotations

import logging
import sys
from typing import Any

from swarmrl.node.logs import json_logging_active

log = logging.getLogger("swarmrl.progress")


def format_round(rec: dict[str, Any], total: int) -> str:
    of = f"/{total}" if total else ""
    parts = [
        f"round {rec['round']}{of}",
        f"v{rec['policy_version']}",
        f"reward {rec['reward_mean']:.3f}",
        f"acc {rec['accuracy']:.3f}",
        f"zero-var {rec['zero_variance_fraction']:.2f}",
        f"loss {rec['loss']:+.4f}",
        f"clip {rec['clip_fraction']:.3f}",
        f"gen {rec['tokens_per_second']:.0f} tok/s",
        f"step {rec['train_seconds']:.2f}s",
    ]
    if rec.get("external_groups"):
        parts.append(f"ext {rec['external_groups']}")
    if rec.get("eval_accuracy") is not None:
        parts.append(f"eval {rec['eval_accuracy']:.3f}")
    return " | ".join(parts)


class Progress:
    def __init__(self, mode: str, total: int, name: str) -> None:
        self.total = total
        # JSON logs own stderr: a live display would put free text between the JSON lines.
        self.rich = not json_logging_active() and (mode == "rich" or (mode == "auto" and sys.stderr.isatty()))
        self._live: Any = None
        if self.rich:
            from rich.console import Console
            from rich.live import Live

            self._live = Live("starting", console=Console(stderr=True), refresh_per_second=4, transient=False)
            self._live.start()

    def update(self, rec: dict[str, Any]) -> None:
        line = format_round(rec, self.total)
        if self._live is not None:
            self._live.update(line)
            if rec.get("eval_accuracy") is not None:
                self._live.console.log(line)
        else:
            log.info(line)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
