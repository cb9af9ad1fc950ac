"""Experiment tracking (``node.report_to``): TensorBoard event files and Weights & Biases runs, fed by the
round record the node journals, so the curves show exactly what ``journal.log`` holds.

Per round: the scalars of ``round_scalars`` (rewards total and per module, accuracy, held-out eval accuracy,
loss, KL, a sampled-token entropy estimate, clip fraction overall and per origin, the external share of the
groups trained on, round timings, generation throughput); every ``node.tracking.text_every`` rounds a sample of
own completions as text. TensorBoard uses ``torch.utils.tensorboard.SummaryWriter`` (needs the ``tensorboard``
package); W&B runs offline unless logged in (``node.tracking.wandb_mode``). Both packages are the ``track``
extra: ``pip install 'swarmrl[track]'``.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import netrc
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from swarmrl.config import NodeConfig
from swarmrl.errors import ConfigError, NodeError
from swarmrl.node.records import RoundRecord
from swarmrl.protocol.types import RolloutGroup

log = logging.getLogger(__name__)

#: The package each tracker needs (pip extra ``track`` installs both).
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}


def check_trackers(report_to: Sequence[str], packages: dict[str, str] | None = None) -> None:
    """ConfigError naming ``node.report_to`` when a tracker's package is not installed."""
    for i, name in enumerate(report_to):
        package = (packages or PACKAGES)[name]
        if importlib.util.find_spec(package) is None:
            raise ConfigError(
                f"node.report_to[{i}]",
                f"'{name}' needs the '{package}' package, which is not installed; "
                "fix: pip install 'swarmrl[track]' (or remove it from node.report_to)",
            )


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def sampled_entropy(groups: Sequence[RolloutGroup]) -> float | None:
    """Mean negative log-prob of the sampled tokens of own completions: a Monte-Carlo estimate of the
    per-token entropy of the sampling distribution (no extra forward pass)."""
    total, count = 0.0, 0
    for g in groups:
        for c in g.completions:
            total -= sum(c.logprobs)
            count += len(c.logprobs)
    return total / count if count else None


def round_scalars(rec: RoundRecord, groups: Sequence[RolloutGroup] = ()) -> dict[str, float]:
    """The tracked scalars of one round record (tag -> value; missing or non-finite values are left out)."""
    local, external = rec.local_groups, rec.external_groups
    out: dict[str, Any] = {
        "reward/mean": rec.reward_mean,
        "reward/std": rec.reward_std,
        "reward/trained_mean": rec.trained_reward_mean,
        "reward/external_mean": rec.external_reward_mean,
        "accuracy/train": rec.accuracy,
        "accuracy/eval": rec.eval_accuracy,
        "train/loss": rec.loss,
        "train/kl": rec.kl,
        "train/entropy": sampled_entropy(groups),
        "train/clip_fraction": rec.clip_fraction,
        "train/zero_variance_fraction": rec.zero_variance_fraction,
        "train/policy_version": rec.policy_version,
        "train/optimizer_steps": rec.optimizer_steps,
        "swarm/external_groups": external,
        "swarm/local_groups": local,
        "swarm/external_share": external / (local + external) if local + external else 0.0,
        "time/round_seconds": rec.round_seconds,
        "time/generation_seconds": rec.generation_seconds,
        "time/train_seconds": rec.train_seconds,
        "generation/tokens_per_second": rec.tokens_per_second,
        "generation/tokens": rec.generation_tokens,
    }
    for name, value in rec.modules.items():
        out[f"reward/module/{name}"] = value
    for origin, value in rec.clip_fraction_by_origin.items():
        out[f"train/clip_fraction/{origin}"] = value
    return {k: f for k, v in out.items() if (f := _finite(v)) is not None}


def completions_markdown(groups: Sequence[RolloutGroup], max_groups: int) -> str:
    """A sample of completions as a markdown table (question, gold answer, completion, reward)."""
    lines = ["| question | answer | completion | reward |", "|---|---|---|---|"]

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", "\\n")[:300]

    for g in list(groups)[:max_groups]:
        for i, c in enumerate(g.completions):
            lines.append(f"| {cell(g.question)} | {cell(g.answer)} | {cell(c.text)} | {_reward(g, i)} |")
    return "\n".join(lines)


def _reward(group: RolloutGroup, i: int) -> str:
    rewards = group.rewards or []
    return f"{rewards[i]:.3f}" if i < len(rewards) else "-"


class Writer(Protocol):
    def scalars(self, values: dict[str, float], step: int) -> None: ...
    def text(self, tag: str, markdown: str, rows: list[list[str]], step: int) -> None: ...
    def close(self) -> None: ...


class TensorBoardWriter:
    """Event files under ``DIR/tensorboard`` via torch's ``SummaryWriter``."""

    def __init__(self, log_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.dir = log_dir
        self._w = SummaryWriter(log_dir=str(log_dir), flush_secs=30)

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self._w.add_scalar(tag, value, step)

    def text(self, tag: str, markdown: str, rows: list[list[str]], step: int) -> None:
        self._w.add_text(tag, markdown, step)

    def close(self) -> None:
        self._w.flush()
        self._w.close()


def wandb_mode(configured: str, env: dict[str, str] | None = None) -> str:
    """``offline`` unless logged in (``WANDB_API_KEY`` or a netrc entry for the W&B host) or told otherwise."""
    env = dict(os.environ) if env is None else env
    if env.get("WANDB_MODE"):
        return env["WANDB_MODE"]
    if configured != "auto":
        return configured
    if env.get("WANDB_API_KEY"):
        return "online"
    try:
        rc = netrc.netrc(env.get("NETRC") or None)
    except (OSError, netrc.NetrcParseError):
        return "offline"
    host = (env.get("WANDB_BASE_URL") or "https://api.wandb.ai").split("//")[-1].split("/")[0]
    return "online" if rc.authenticators(host) else "offline"


class WandbWriter:
    """One W&B run per node run, files under ``DIR/wandb``; offline unless logged in."""

    def __init__(self, root: Path, cfg: NodeConfig) -> None:
        import wandb

        mode = wandb_mode(cfg.node.tracking.wandb_mode)
        self._wandb = wandb
        self._run = wandb.init(
            project=cfg.node.tracking.wandb_project,
            name=cfg.node.name,
            dir=str(root),
            mode=mode,  # type: ignore[arg-type]
            config=cfg.model_dump(mode="json"),
            reinit="create_new",
            # No console capture and no banner: the node's own logs (possibly JSON lines) own the terminal.
            settings=wandb.Settings(console="off", silent=True),
        )
        self.dir = Path(self._run.dir).parent
        log.info("W&B run %s (%s) in %s", self._run.id, mode, self.dir)

    def scalars(self, values: dict[str, float], step: int) -> None:
        self._run.log(values, step=step)

    def text(self, tag: str, markdown: str, rows: list[list[str]], step: int) -> None:
        table = self._wandb.Table(columns=["question", "answer", "completion", "reward"], data=rows)
        self._run.log({tag: table}, step=step)

    def close(self) -> None:
        self._run.finish()


class Tracking:
    """The trackers of one node run; ``round`` is called once per round with the journal record."""

    def __init__(self, writers: list[Writer], text_every: int, text_samples: int) -> None:
        self.writers = writers
        self.text_every = text_every
        self.text_samples = text_samples

    @classmethod
    def from_config(cls, cfg: NodeConfig, data_dir: Path) -> Tracking | None:
        names = cfg.node.report_to
        if not names:
            return None
        check_trackers(names)
        t = cfg.node.tracking
        root = t.dir if t.dir.is_absolute() else data_dir / t.dir
        writers: list[Writer] = []
        try:
            root.mkdir(parents=True, exist_ok=True)
            for name in names:
                if name == "tensorboard":
                    writers.append(TensorBoardWriter(root / "tensorboard"))
                    log.info("TensorBoard event files in %s", root / "tensorboard")
                else:
                    writers.append(WandbWriter(root, cfg))
        except Exception as exc:
            for w in writers:
                w.close()
            raise NodeError(f"cannot start experiment tracking ({', '.join(names)}): {exc}") from exc
        return cls(writers, t.text_every, t.text_samples)

    def round(self, rec: RoundRecord, groups: Sequence[RolloutGroup]) -> None:
        step = rec.round
        values = round_scalars(rec, groups)
        text_due = self.text_every and step % self.text_every == 0 and groups
        markdown, rows = "", []
        if text_due:
            markdown = completions_markdown(groups, self.text_samples)
            rows = [
                [g.question, g.answer, c.text, _reward(g, i)]
                for g in list(groups)[: self.text_samples]
                for i, c in enumerate(g.completions)
            ]
        for w in self.writers:
            try:
                w.scalars(values, step)
                if text_due:
                    w.text("completions", markdown, rows, step)
            except Exception as exc:  # a tracker must never stop training
                log.warning("experiment tracker %s failed at round %d: %s", type(w).__name__, step, exc)

    def close(self) -> None:
        for w in self.writers:
            try:
                w.close()
            except Exception as exc:
                log.warning("closing experiment tracker %s failed: %s", type(w).__name__, exc)
