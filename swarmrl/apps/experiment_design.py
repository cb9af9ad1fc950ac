"""The SAPO experiment's design: arms (splits of the per-round budget and sampling rules), regimes (task
mixes and model strengths), run settings, and how flags and a user's config become them.

``experiment`` runs what is designed here; ``experiment_report`` pairs and reports the results.
"""

from __future__ import annotations

import logging
import math
import statistics
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from swarmrl.errors import ConfigError, NodeError

log = logging.getLogger(__name__)

FAMILIES = ("add", "sub", "mul", "mixed")
#: Per-round journal fields kept per node (columnar lists in the results JSON; round_seconds as a median).
SERIES = (
    "reward_mean",
    "trained_reward_mean",
    "zero_variance_fraction",
    "local_groups",
    "external_groups",
    "generation_tokens",
    "round_seconds",
)
Transport = Literal["memory", "libp2p"]


@dataclass(frozen=True)
class Arm:
    """One way of spending the per-round budget: I own groups, J external groups, a sampler, and how the
    external completions enter the loss (``external_samples``, ``correction``, ``cap``: the ``sampling``
    fields of the same names). ``fill`` None takes the experiment's ``fill_with_local``; an *additive* arm
    (I = B, J > 0) sets it False: the node trains on its solo budget of own groups plus what the pool gives."""

    name: str
    local: int
    external: int
    strategy: str = "nonzero_advantage_uniform"
    filter_local: bool = False
    fill: bool | None = None
    external_samples: str = "all"
    correction: str = "none"
    cap: float = 1.0

    def sampling(self, fill_with_local: bool) -> dict[str, Any]:
        """The node config's ``sampling`` section for this arm."""
        return {
            "local_groups": self.local,
            "external_groups": self.external,
            "strategy": self.strategy,
            "filter_local": self.filter_local,
            "fill_with_local": fill_with_local if self.fill is None else self.fill,
            "external_samples": self.external_samples,
            "offpolicy_correction": self.correction,
            "offpolicy_cap": self.cap,
        }


DEFAULT_ARM = "default"


def default_arm() -> Arm:
    """The arm that runs exactly the shipped ``sampling`` defaults (whatever they are)."""
    from swarmrl.config.swarm import SamplingSection

    d = SamplingSection()
    return Arm(
        DEFAULT_ARM,
        d.local_groups,
        d.external_groups,
        d.strategy,
        d.filter_local,
        d.fill_with_local,
        d.external_samples,
        d.offpolicy_correction,
        d.offpolicy_cap,
    )


@dataclass(frozen=True)
class Regime:
    """Signal density: completions per question, warm-start strength (supervised steps), operand digits and
    whether the nodes start as specialists (own warm-start mix and seed) or as one homogeneous model
    (identical warm-started weights, different sampling seeds: the SAPO paper's setting)."""

    name: str
    completions: int
    warmstart_steps: int
    digits: int = 1
    max_new_tokens: int = 0  # 0 = the experiment's max_new_tokens
    homogeneous: bool = False


@dataclass(frozen=True)
class Settings:
    """Everything that determines a run of the experiment (written into the JSON)."""

    out: Path
    rounds: int = 120
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    nodes: int = 4
    budget: int = 8
    arms: tuple[Arm, ...] = ()
    regimes: tuple[Regime, ...] = ()
    transport: Transport = "memory"
    workers: int = 2
    fill_with_local: bool = True
    hidden_size: int = 64
    layers: int = 1
    max_new_tokens: int = 4
    eval_questions: int = 32
    warmstart_focus: float = 0.7
    lr: float = 3e-4
    ma_window: int = 10
    smoke: bool = False
    #: A user's node config (as a dict) to take the model, tasks, rewards, generation and trainer from
    #: (``--config FILE``); None runs the built-in tiny setup.
    base_config: dict[str, Any] | None = None


def all_arms(budget: int = 8) -> tuple[Arm, ...]:
    """Every arm the experiment knows: the B/0 baseline, the shipped ``default``, the paper's splits (B/0 ..
    2/B-2 in steps of 2) with plain external samples, the filtered control, the other samplers at the even
    split, the adaptive sampler, external positives only (``pos``), the truncated importance weight
    (``+is``) and additive sharing (``B+H``: the solo budget of own groups plus H = B/2 external groups)."""
    if budget < 2 or budget % 2:
        raise ConfigError("--budget", f"the per-round budget must be an even number >= 2, got {budget}")
    half = budget // 2
    add = f"{budget}+{half}"
    arms = [Arm(f"{budget}/0", budget, 0), default_arm()]
    arms += [Arm(f"{budget}/0 filtered", budget, 0, filter_local=True)]
    arms += [Arm(f"{budget - j}/{j}", budget - j, j) for j in range(2, budget, 2)]
    arms += [
        Arm(f"{half}/{half} uniform", half, half, "uniform"),
        Arm(f"{half}/{half} top_reward", half, half, "top_reward"),
        Arm("adaptive", half, half, "adaptive"),
        Arm(f"{half}/{half} pos", half, half, external_samples="positive"),
        Arm(f"{half}/{half} pos+is", half, half, external_samples="positive", correction="truncated_is"),
        Arm(f"{half}/{half} is", half, half, correction="truncated_is"),
        Arm(add, budget, half, fill=False),
        Arm(f"{add} pos", budget, half, fill=False, external_samples="positive"),
        Arm(
            f"{add} pos+is", budget, half, fill=False, external_samples="positive", correction="truncated_is"
        ),
        Arm(f"{budget}+{budget} pos", budget, budget, fill=False, external_samples="positive"),
        Arm("adaptive pos", half, half, "adaptive", external_samples="positive"),
    ]
    return tuple(arms)


#: The arms a plain ``experiment sapo`` runs (the others by ``--arm NAME``).
SUITE_ARMS = ("8/0", DEFAULT_ARM, "4/4", "4/4 pos", "4/4 pos+is", "8+4", "8+4 pos", "8+4 pos+is")


def default_arms(budget: int = 8) -> tuple[Arm, ...]:
    """The suite: the baseline first, the shipped default, and the mechanisms compared against it. An arm
    whose sampling is exactly the shipped default's is left out (the ``default`` arm runs it)."""
    known = all_arms(budget)
    wanted = [_scaled(n, budget) for n in SUITE_ARMS]
    chosen = [a for a in known if a.name in wanted]
    default = next(a for a in chosen if a.name == DEFAULT_ARM)
    return tuple(
        a for a in chosen if a.name == DEFAULT_ARM or a.external == 0 or not _same_sampling(a, default)
    )


def _same_sampling(a: Arm, b: Arm) -> bool:
    """Same node config under the experiment's default ``fill_with_local`` (on)."""
    return a.sampling(True) == b.sampling(True)


def _scaled(name: str, budget: int) -> str:
    """Suite arm names are written for B = 8; the same arms for another (even) budget."""
    half = budget // 2
    return (
        name.replace("8/0", f"{budget}/0").replace("8+4", f"{budget}+{half}").replace("4/4", f"{half}/{half}")
    )


def all_regimes() -> tuple[Regime, ...]:
    return (
        Regime("sparse", completions=4, warmstart_steps=40),
        Regime("dense", completions=8, warmstart_steps=160),
        Regime("hard", completions=8, warmstart_steps=160, digits=2, max_new_tokens=5),
        Regime("sparse-homogeneous", completions=4, warmstart_steps=40, homogeneous=True),
        Regime(
            "hard-homogeneous",
            completions=8,
            warmstart_steps=160,
            digits=2,
            max_new_tokens=5,
            homogeneous=True,
        ),
    )


#: The regimes a plain ``experiment sapo`` runs.
SUITE_REGIMES = ("sparse", "dense", "hard")


def default_regimes() -> tuple[Regime, ...]:
    return tuple(r for r in all_regimes() if r.name in SUITE_REGIMES)


def smoke_settings(out: Path, transport: Transport = "memory") -> Settings:
    """A pipeline check for CI: 2 nodes, 3 arms, 2 seeds, a few rounds, both regimes (well under 2 min)."""
    arms = (
        Arm("4/0", 4, 0),
        default_arm(),
        Arm("2/2", 2, 2),
        Arm("2/2 pos+is", 2, 2, external_samples="positive", correction="truncated_is"),
        Arm("adaptive", 2, 2, "adaptive"),
    )
    regimes = (Regime("sparse", 2, 5), Regime("dense", 4, 10))
    return Settings(
        out=out,
        rounds=4,
        seeds=(0, 1),
        nodes=2,
        budget=4,
        arms=arms,
        regimes=regimes,
        transport=transport,
        workers=1,
        hidden_size=16,
        layers=1,
        max_new_tokens=3,
        eval_questions=4,
        ma_window=2,
        smoke=True,
    )


# -- configs ----------------------------------------------------------------------------------------------


def with_minutes(s: Settings, minutes: float, seconds_per_node_round: float) -> Settings:
    """Choose the rounds so that the whole run fits ``minutes`` on ``s.workers`` processes."""
    per_round = len(s.regimes) * len(s.seeds) * len(s.arms) * s.nodes * seconds_per_node_round
    rounds = int(minutes * 60 * max(1, s.workers) / per_round)
    if rounds < 10:
        raise NodeError(
            f"{minutes} minutes allow only {rounds} rounds; give more minutes or fewer seeds/arms"
        )
    return replace(s, rounds=rounds, ma_window=max(2, min(s.ma_window, math.ceil(rounds / 10))))


#: Measured wall seconds per node-round on the 2-core reference machine with 2 workers busy, per completion
#: of the group size (a round costs roughly in proportion to G at these sizes); used by ``--minutes``.
SECONDS_PER_NODE_ROUND_PER_COMPLETION = 0.032


#: Sections a ``--config FILE`` contributes (the experiment owns node, sampling and swarm).
CONFIG_SECTIONS = ("model", "tasks", "generation", "trainer", "rewards")


def config_regime(path: Path) -> tuple[Regime, dict[str, Any]]:
    """A user's node config as the experiment's one regime: its model, tasks, rewards, generation and
    trainer, validated like ``config check`` (a bad file raises ConfigError naming the field)."""
    from swarmrl.config import load_config

    cfg = load_config(path, env={})
    dumped = cfg.model_dump(mode="json")
    base = {k: dumped[k] for k in CONFIG_SECTIONS}
    regime = Regime(
        path.stem or "config",
        completions=cfg.generation.num_completions,
        warmstart_steps=cfg.model.tiny.warmstart_steps,
    )
    return regime, base


def settings_from_flags(
    out: Path,
    minutes: float,
    rounds: int | None,
    seeds: int,
    nodes: int,
    workers: int,
    regimes: list[str] | None,
    transport: str,
    fill: bool,
    smoke: bool,
    arms: list[str] | None = None,
    config: Path | None = None,
    hidden_size: int | None = None,
    layers: int | None = None,
    warmstart_steps: int | None = None,
) -> Settings:
    """Settings from the CLI flags; ``rounds`` wins over ``minutes``; ``arms`` picks arms by name from
    :func:`all_arms` (the B/0 baseline and the ``default`` arm always run, first); ``config`` runs the user's
    model, tasks and rewards as the one regime; ``hidden_size``/``layers``/``warmstart_steps`` make a
    stronger (or weaker) embedded policy than the built-in tiny one."""
    if transport not in ("memory", "libp2p"):
        raise ConfigError("--transport", f"must be 'memory' or 'libp2p', got {transport!r}")
    tr: Transport = "libp2p" if transport == "libp2p" else "memory"
    if smoke:
        smoke_s = replace(smoke_settings(out, tr), fill_with_local=fill)
        if config is not None:
            regime, base = config_regime(config)
            # the user's model may be big: one seed, the baseline and the shipped default only
            smoke_s = replace(smoke_s, regimes=(regime,), base_config=base, seeds=(0,), arms=smoke_s.arms[:2])
        return smoke_s
    if seeds < 1 or nodes < 2 or workers < 1:
        raise ConfigError("experiment", "needs --seeds >= 1, --nodes >= 2 and --workers >= 1")
    base_config = None
    if config is not None:
        if regimes:
            raise ConfigError("--regime", "--config FILE is the one regime; drop --regime")
        regime, base_config = config_regime(config)
        chosen_regimes: tuple[Regime, ...] = (regime,)
    else:
        known = {r.name: r for r in all_regimes()}
        names = regimes or list(SUITE_REGIMES)
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigError("--regime", f"unknown regime(s) {unknown}; choose from {list(known)}")
        chosen_regimes = tuple(known[n] for n in names)
    if warmstart_steps is not None:
        if warmstart_steps < 0:
            raise ConfigError("--warmstart-steps", "must be >= 0")
        chosen_regimes = tuple(replace(r, warmstart_steps=warmstart_steps) for r in chosen_regimes)
    chosen = default_arms()
    if arms:
        catalogue = {a.name: a for a in all_arms()}
        wrong = [a for a in arms if a not in catalogue]
        if wrong:
            raise ConfigError("--arm", f"unknown arm(s) {wrong}; choose from {list(catalogue)}")
        keep = [chosen[0].name, DEFAULT_ARM] + [a for a in arms if a not in (chosen[0].name, DEFAULT_ARM)]
        chosen = tuple(catalogue[n] for n in keep)
    s = Settings(
        out=out,
        seeds=tuple(range(seeds)),
        nodes=nodes,
        arms=chosen,
        regimes=chosen_regimes,
        transport=tr,
        workers=workers,
        fill_with_local=fill,
        base_config=base_config,
    )
    if hidden_size is not None or layers is not None:
        if (hidden_size is not None and hidden_size < 8) or (layers is not None and layers < 1):
            raise ConfigError("--hidden-size", "needs --hidden-size >= 8 and --layers >= 1")
        s = replace(s, hidden_size=hidden_size or s.hidden_size, layers=layers or s.layers)
    if rounds is not None:
        if rounds < 2:
            raise ConfigError("--rounds", "needs at least 2 rounds")
        return replace(s, rounds=rounds, ma_window=max(2, min(s.ma_window, math.ceil(rounds / 10))))
    mean_g = statistics.fmean(r.completions for r in s.regimes)
    return with_minutes(s, minutes, SECONDS_PER_NODE_ROUND_PER_COMPLETION * mean_g)
