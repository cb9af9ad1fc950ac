"""Checks that need more than pydantic: reward names against the registry, task sources buildable."""

from __future__ import annotations

from typing import TYPE_CHECKING

from swarmrl.config import NodeConfig
from swarmrl.errors import ConfigError, RewardError, TaskConfigError, TaskError

if TYPE_CHECKING:
    from swarmrl.rewards.pipeline import RewardPipeline
    from swarmrl.tasks.schedule import RecoveringScheduler


def build_reward_pipeline(cfg: NodeConfig) -> RewardPipeline:
    """The reward pipeline the config describes (modules, report-only modules, combine/credit/segment)."""
    from swarmrl.rewards import build_pipeline

    r = cfg.rewards
    return build_pipeline(
        [(m.name, m.weight, m.params) for m in r.modules],
        r.report,
        combine=r.combine,
        credit=r.credit,
        segment=r.segment,
    )


def check_semantics(cfg: NodeConfig) -> None:
    """Raise ConfigError naming the field when a reward module or task source cannot be built."""
    from swarmrl.rewards.registry import default_registry

    registry = default_registry()
    for i, spec in enumerate(cfg.rewards.modules):
        if spec.name not in registry:
            raise ConfigError(
                f"rewards.modules[{i}].name",
                f"unknown reward module '{spec.name}'; fix: use one of {', '.join(registry.names())}",
            )
        try:
            registry.create(spec.name, spec.params)
        except RewardError as exc:
            raise ConfigError(f"rewards.modules[{i}].params", str(exc)) from None
    for i, name in enumerate(cfg.rewards.report):
        if name not in registry:
            raise ConfigError(
                f"rewards.report[{i}]",
                f"unknown reward module '{name}'; fix: use one of {', '.join(registry.names())}",
            )
    try:
        pipeline = build_reward_pipeline(cfg)
    except RewardError as exc:
        raise ConfigError("rewards", str(exc)) from None
    from swarmrl.node.tracking import check_trackers

    check_trackers(cfg.node.report_to)
    from swarmrl.tasks import build_source

    sources = []
    for i, src in enumerate(cfg.tasks.sources):
        try:
            built = build_source(src.source, src.dataset, src.config, cfg.tasks.seed, cfg.tasks.size)
            built.get(0)
            sources.append(built)
        except TaskConfigError as exc:
            raise ConfigError(f"tasks.sources[{i}].{exc.field}", str(exc)) from None
        except TaskError as exc:
            raise ConfigError(f"tasks.sources[{i}]", str(exc)) from None
        if built.size <= cfg.tasks.eval_questions:
            raise ConfigError(
                "tasks.eval_questions",
                f"tasks.sources[{i}] ({src.source}/{src.dataset}) has {built.size} items, not more than the "
                f"{cfg.tasks.eval_questions} held-out evaluation questions; fix: lower it or use more data",
            )
    from swarmrl.node.inputs import check_inputs

    check_inputs(cfg)
    sch = cfg.tasks.scheduler
    if cfg.tasks.schedule != "fixed" and sch.arms_per_round > len(cfg.tasks.sources):
        raise ConfigError(
            "tasks.scheduler.arms_per_round",
            f"{sch.arms_per_round} sources per round but only {len(cfg.tasks.sources)} task sources; "
            "fix: use at most the number of tasks.sources",
        )

    from swarmrl.node.requirements import check_requirements

    check_requirements(cfg, pipeline, sources)
    check_trainer(cfg)


def check_trainer(cfg: NodeConfig) -> None:
    """Cross-section trainer checks: a decaying learning-rate schedule needs a horizon."""
    t = cfg.trainer
    if t.lr_schedule != "constant" and not t.schedule_steps and not cfg.node.rounds:
        raise ConfigError(
            "trainer.lr_schedule",
            f"'{t.lr_schedule}' decays over the run, but node.rounds is 0 (unbounded); fix: set "
            "trainer.schedule_steps (optimizer steps) or node.rounds, or use 'constant'",
        )
    if t.lr_schedule != "constant" and t.warmup_steps >= schedule_horizon(cfg):
        raise ConfigError(
            "trainer.warmup_steps",
            f"{t.warmup_steps} warm-up steps leave nothing of the {schedule_horizon(cfg)}-step schedule; "
            "fix: use fewer",
        )


def schedule_horizon(cfg: NodeConfig) -> int:
    """Optimizer steps the learning-rate schedule spans: trainer.schedule_steps, else node.rounds x
    trainer.updates_per_round (0 when neither bounds the run)."""
    t = cfg.trainer
    return t.schedule_steps or cfg.node.rounds * t.updates_per_round


def build_scheduler(cfg: NodeConfig) -> RecoveringScheduler | None:
    """The task scheduler ``tasks.schedule`` asks for (None for ``fixed``)."""
    t = cfg.tasks
    if t.schedule == "fixed":
        return None
    from swarmrl.tasks.schedule import RecoveringScheduler

    s = t.scheduler
    return RecoveringScheduler(
        len(t.sources),
        t.schedule,
        s.arms_per_round,
        s.max_gap,
        s.max_period,
        s.ucb_c,
        s.replan_every,
        s.prior,
    )
