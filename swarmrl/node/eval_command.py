"""``swarm-node eval``: load a policy (an exported or any saved model directory, or a node's newest checkpoint)
and run the held-out evaluation of ``swarmrl.node.evaluation`` on it."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import ValidationError

from swarmrl.config import NodeConfig, format_validation_error, load_config
from swarmrl.config.sections import TaskSourceSpec
from swarmrl.errors import ConfigError
from swarmrl.node.evaluation import EvalResult, EvalSettings, evaluate_tasks
from swarmrl.node.export import EXPORT_INFO
from swarmrl.node.saved_config import read_node_config
from swarmrl.tasks import TaskSampler, build_source
from swarmrl.trainer.generation import build_generator
from swarmrl.trainer.policy import Policy, load_policy
from swarmrl.trainer.trained import load_trained_policy


@dataclass(frozen=True)
class EvalRequest:
    model: Path | None = None
    data_dir: Path | None = None
    checkpoint: int | None = None
    config: Path | None = None
    tasks: tuple[str, ...] = ()
    samples: int = 8
    ks: tuple[int, ...] = ()
    seed: int = 0
    device: str | None = None


def _task_specs(cfg: NodeConfig, names: tuple[str, ...]) -> list[TaskSourceSpec]:
    """``SOURCE/DATASET`` (or ``DATASET`` of the arithmetic source) items; a source the config trained on
    keeps its dataset config."""
    known = {(s.source, s.dataset): s for s in cfg.tasks.sources}
    specs = []
    for name in names:
        source, _, dataset = name.rpartition("/")
        raw = {"source": source or "arithmetic", "dataset": dataset}
        if not dataset:
            raise ConfigError("--tasks", f"'{name}' must look like SOURCE/DATASET, e.g. arithmetic/add")
        try:
            spec = TaskSourceSpec.model_validate(raw)
        except ValidationError as exc:
            err = format_validation_error(exc)
            raise ConfigError("--tasks", f"'{name}': {err.message}") from None
        specs.append(known.get((spec.source, spec.dataset), spec))
    return specs


def _model_config(req: EvalRequest, model_dir: Path) -> NodeConfig:
    """For ``--model DIR``: the config file if given, else the tasks and generation the export recorded."""
    cfg = load_config(req.config, env={}) if req.config is not None else NodeConfig()
    info_path = model_dir / EXPORT_INFO
    if req.config is None and info_path.is_file():
        info = json.loads(info_path.read_text(encoding="utf-8"))
        try:
            cfg = NodeConfig.model_validate(
                {"tasks": info.get("tasks", {}), "generation": info.get("generation", {})}
            )
        except ValidationError as exc:
            raise ConfigError(str(info_path), str(format_validation_error(exc))) from None
    # An export has its adapters merged: load it as a plain model.
    model = cfg.model.model_copy(update={"name": str(model_dir), "lora_rank": 0})
    return cfg.model_copy(update={"model": model})


def load_for_eval(req: EvalRequest) -> tuple[NodeConfig, Policy, str]:
    """The config, the policy and a one-line description of what is evaluated."""
    if req.model is not None and req.data_dir is None:
        if not (req.model / "config.json").is_file():
            raise ConfigError("--model", f"'{req.model}' is not a saved model directory (no config.json)")
        cfg = _model_config(req, req.model)
        model_cfg = cfg.model.model_copy(update={"device": req.device} if req.device else {})
        policy = load_policy(model_cfg, cfg.tasks, req.model, cfg.node.seed)
        return cfg, policy, f"model {req.model}"
    if req.data_dir is None or req.model is not None:
        raise ConfigError("--model", "give exactly one of --model DIR or --data-dir D")
    cfg = read_node_config(req.data_dir, req.config)
    trained = load_trained_policy(cfg, req.data_dir, req.checkpoint, device=req.device)
    what = f"{req.data_dir} checkpoint round {trained.round} (policy version {trained.policy_version})"
    return cfg, trained.policy, what


def run_eval(req: EvalRequest) -> tuple[EvalResult, str]:
    """Evaluate on the held-out questions; returns the result and a header line."""
    if req.samples < 0:
        raise ConfigError("--samples", f"must be >= 0, got {req.samples}")
    cfg, policy, what = load_for_eval(req)
    specs = _task_specs(cfg, req.tasks) if req.tasks else list(cfg.tasks.sources)
    if cfg.tasks.eval_questions < 1:
        raise ConfigError("tasks.eval_questions", "is 0: the run held no questions out to evaluate on")
    sources = [build_source(s.source, s.dataset, s.config, cfg.tasks.seed, cfg.tasks.size) for s in specs]
    sampler = TaskSampler(sources, [s.weight for s in specs], random.Random(0), cfg.tasks.eval_questions)
    g = cfg.generation
    settings = EvalSettings(
        max_new_tokens=g.max_new_tokens,
        temperature=g.temperature,
        top_p=g.top_p,
        samples=req.samples,
        ks=req.ks,
    )
    try:
        settings.resolved_ks()
    except ValueError as exc:
        raise ConfigError("--k", str(exc)) from None
    torch.manual_seed(req.seed)
    result = evaluate_tasks(build_generator("hf", policy), policy.tokenizer, sampler.eval_set(), settings)
    result.settings["evaluated"] = what
    result.settings["seed"] = req.seed
    header = (
        f"held-out evaluation of {what}: {cfg.tasks.eval_questions} questions per source, greedy and "
        f"{req.samples} samples each (temperature {g.temperature:g}, top-p {g.top_p:g}, "
        f"{g.max_new_tokens} new tokens)"
    )
    return result, header
