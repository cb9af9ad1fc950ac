"""Config sections for the node spine: node, model, tasks, generation, trainer, rewards.

The swarm's sections live in ``swarm.py`` (owned by the swarm subsystem). Bounds live on every number.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from swarmrl.config.base import Section
from swarmrl.errors import InvalidValue

EMBEDDED_MODEL = "tiny-default"


class DiskSection(Section):
    """Size caps of what a node writes into its data directory (each file rotates at a record/line boundary).

    A capped file uses at most about ``max_mb * (1 + keep)`` MiB; 0 MiB never rotates (unbounded).
    """

    journal_max_mb: float = Field(
        32.0, ge=0, le=1_000_000, description="journal.log rotates at this size (MiB); 0 never rotates."
    )
    journal_keep: int = Field(
        3,
        ge=0,
        le=1000,
        description="Rotated journal files kept (journal.log.1 ...); older ones are deleted.",
    )
    rollouts_max_mb: float = Field(
        32.0, ge=0, le=1_000_000, description="rollouts.log rotates at this size (MiB); 0 never rotates."
    )
    rollouts_keep: int = Field(1, ge=0, le=1000, description="Rotated rollouts.log files kept.")
    log_max_mb: float = Field(
        16.0, ge=0, le=1_000_000, description="node.log_file rotates at this size (MiB); 0 never rotates."
    )
    log_keep: int = Field(2, ge=0, le=1000, description="Rotated log files kept (node.log.1 ...).")


class TrackingSection(Section):
    """Experiment tracking (``node.report_to``): where the writers put their files and what they log."""

    dir: Path = Field(
        Path("runs"),
        description="Directory of the TensorBoard event files and the W&B run (relative: inside node.data_dir).",
    )
    text_every: int = Field(
        50, ge=0, le=1_000_000, description="Log a sample of completions as text every N rounds (0 = never)."
    )
    text_samples: int = Field(4, ge=1, le=256, description="Groups in each logged sample of completions.")
    wandb_project: str = Field("swarmrl", min_length=1, max_length=128, description="W&B project name.")
    wandb_mode: Literal["auto", "offline", "online"] = Field(
        "auto",
        description="W&B mode: 'auto' is online when logged in (WANDB_API_KEY or a netrc entry), else offline; "
        "WANDB_MODE in the environment wins.",
    )


class NodeSection(Section):
    name: str = Field("node", description="Human-readable node name (logs, metrics target label).")
    data_dir: Path = Field(
        Path("./swarm-data"), description="Directory for checkpoints, journal, identity key and caches."
    )
    seed: int = Field(0, ge=0, description="Seed for this node's RNGs (tasks, sampling, model init).")
    rounds: int = Field(200, ge=0, description="Rounds to run before a clean stop; 0 runs until stopped.")
    checkpoint_every: int = Field(
        1, ge=1, description="Write an atomic checkpoint every K rounds (a kill loses at most K-1 rounds)."
    )
    keep_checkpoints: int = Field(3, ge=1, le=100, description="Checkpoints kept on disk (oldest removed).")
    metrics_host: str = Field("127.0.0.1", description="Address of the /metrics and /healthz endpoint.")
    metrics_port: int = Field(
        9400, ge=-1, le=65535, description="Port of /metrics and /healthz; 0 picks a free port, -1 disables."
    )
    control_port: int = Field(
        0,
        ge=-1,
        le=65535,
        description="Port of the gRPC control service (127.0.0.1 only; `swarm-node status|peers`); "
        "0 picks a free port, -1 disables.",
    )
    eval_every: int = Field(
        20,
        ge=0,
        le=1_000_000,
        description="Greedy exact-match evaluation on held-out questions every N rounds.",
    )
    record_rollouts: bool = Field(
        True, description="Keep the text of every trained group in rollouts.log (for `rewards compare`)."
    )
    threads: int = Field(0, ge=0, le=512, description="torch CPU threads; 0 uses all cores of this machine.")
    log_format: Literal["text", "json"] = Field(
        "text", description="'text' for terminals, 'json' for one JSON object per line (log collectors)."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")
    progress: Literal["auto", "rich", "plain"] = Field(
        "auto", description="Live progress: 'rich' display on a TTY, 'plain' lines; 'auto' picks by TTY."
    )
    log_file: Path | None = Field(
        None,
        description="Write the logs to this file (rotated by node.disk.log_max_mb) instead of stderr; "
        "a relative path is inside node.data_dir.",
    )
    disk: DiskSection = Field(default_factory=DiskSection)
    report_to: list[Literal["tensorboard", "wandb"]] = Field(
        default_factory=list,
        description="Experiment trackers fed every round: 'tensorboard', 'wandb', a list of both, or 'none'.",
    )
    tracking: TrackingSection = Field(default_factory=TrackingSection)

    @field_validator("report_to", mode="before")
    @classmethod
    def _report_to_list(cls, value: Any) -> Any:
        items = [x for x in value.split(",") if x.strip()] or ["none"] if isinstance(value, str) else value
        if not isinstance(items, list):
            return value
        items = [x.strip().lower() if isinstance(x, str) else x for x in items]
        if "none" in items:
            if len(items) > 1:
                raise InvalidValue("'none' cannot be combined with other trackers")
            return []
        if len(set(items)) != len(items):
            raise InvalidValue(f"lists a tracker twice: {items}")
        return items


class TinyModelSection(Section):
    """Architecture and warm start of the embedded default model (used when model.name is tiny-default)."""

    hidden_size: int = Field(128, ge=8, le=4096, description="Hidden size of the tiny Qwen2-style model.")
    layers: int = Field(2, ge=1, le=48, description="Transformer layers.")
    heads: int = Field(4, ge=1, le=64, description="Attention heads (must divide hidden_size).")
    intermediate_size: int = Field(256, ge=8, le=16384, description="MLP width.")
    vocab_extra: str = Field(
        "",
        max_length=1000,
        description="Extra characters in the tokenizer vocabulary (a different vocabulary for heterogeneous swarms).",
    )
    warmstart_steps: int = Field(
        40, ge=0, le=100000, description="Supervised warm-start steps on generated task solutions."
    )
    warmstart_batch: int = Field(64, ge=1, le=4096, description="Warm-start batch size.")
    warmstart_lr: float = Field(3e-3, gt=0, le=1.0, description="Warm-start learning rate (AdamW).")
    warmstart_examples: int = Field(
        2000, ge=10, le=10_000_000, description="Distinct generated solutions used for the warm start."
    )
    warmstart_sources: list[TaskSourceSpec] | None = Field(
        None,
        description="Task mix of the warm start (e.g. mostly one family); None uses tasks.sources.",
    )

    @model_validator(mode="after")
    def _heads_divide(self) -> TinyModelSection:
        if self.hidden_size % self.heads:
            raise InvalidValue(f"heads ({self.heads}) must divide hidden_size ({self.hidden_size})")
        return self


def _looks_like_path(value: str) -> bool:
    """Hub ids are 'name' or 'org/name'; anything rooted or deeper is a filesystem path."""
    return value.startswith(("/", "./", "../", "~", ".")) or value.count("/") > 1


class ModelSection(Section):
    name: str = Field(
        EMBEDDED_MODEL,
        description="'tiny-default' (built locally), a Hugging Face hub id ('org/name') or a local directory.",
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto",
        description="'auto' uses CUDA when present; 'mps' is Apple-silicon GPUs (code path only: untested on "
        "Apple hardware).",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype; 'auto' is float32 on CPU and MPS and bfloat16 on CUDA."
    )
    gradient_checkpointing: bool = Field(
        False,
        description="Recompute activations in the backward pass (transformers' gradient checkpointing): "
        "less memory for long sequences, about one more forward of compute per update.",
    )
    trust_remote_code: bool = Field(False, description="Allow custom model code from the hub (off: safer).")
    lora_rank: int = Field(
        0, ge=0, le=1024, description="LoRA rank (peft) for big models; 0 trains all weights."
    )
    lora_alpha: float | None = Field(
        None, gt=0, le=100_000, description="LoRA alpha (scale alpha/rank); None uses 2 x lora_rank."
    )
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA input.")
    lora_target_modules: list[str] | str = Field(
        "all-linear",
        description="Modules that get adapters: 'all-linear' or a list of module names "
        "(e.g. [q_proj, k_proj, v_proj, o_proj]).",
    )
    tiny: TinyModelSection = Field(default_factory=TinyModelSection)

    @field_validator("lora_target_modules")
    @classmethod
    def _module_names(cls, value: list[str] | str) -> list[str] | str:
        if isinstance(value, str) and value != "all-linear":
            raise InvalidValue(f"use 'all-linear' or a list of module names, not {value!r}")
        if isinstance(value, list):
            if not value:
                raise InvalidValue("must name at least one module, or be 'all-linear'")
            for name in value:
                if not re.fullmatch(r"[A-Za-z0-9_.]+", name):
                    raise InvalidValue(f"'{name}' is not a module name (letters, digits, '_' and '.')")
        return value

    @field_validator("name")
    @classmethod
    def _model_exists(cls, value: str) -> str:
        if not value.strip():
            raise InvalidValue("must not be empty; use 'tiny-default', a hub id or a local directory")
        if value == EMBEDDED_MODEL:
            return value
        if _looks_like_path(value) or Path(value).expanduser().exists():
            path = Path(value).expanduser()
            if not path.is_dir():
                raise InvalidValue(
                    f"model path '{value}' does not exist; pass an existing directory or a hub id"
                )
            if not (path / "config.json").is_file():
                raise InvalidValue(
                    f"model directory '{value}' has no config.json; save it with model.save_pretrained()"
                )
            return value
        if value.count("/") > 1 or " " in value:
            raise InvalidValue(f"'{value}' is neither a hub id ('org/name') nor an existing directory")
        return value


#: Built-in task sources; plugins add names through the ``swarmrl.tasks`` entry-point group.
BUILTIN_TASK_SOURCES = ("arithmetic", "multistep", "reasoning_gym", "dataset")
TASK_ENTRY_POINT_GROUP = "swarmrl.tasks"


class TaskSourceSpec(Section):
    source: str = Field(
        "arithmetic",
        description="Task source: built-in 'arithmetic', 'multistep', 'reasoning_gym', 'dataset' (your own "
        "JSONL/CSV/Parquet file or saved dataset directory; config: path, format, question_field, "
        "answer_field, extract, template, split), or a plugin of the 'swarmrl.tasks' entry-point group.",
    )
    dataset: str = Field(
        "add", description="Dataset inside the source (reasoning-gym dataset name; a name for your file)."
    )
    config: dict[str, Any] = Field(default_factory=dict, description="Dataset configuration.")
    weight: float = Field(1.0, gt=0, description="Relative sampling weight among the sources.")

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        if value in BUILTIN_TASK_SOURCES:
            return value
        from importlib.metadata import entry_points

        plugins = sorted(ep.name for ep in entry_points(group=TASK_ENTRY_POINT_GROUP))
        if value not in plugins:
            names = ", ".join([*BUILTIN_TASK_SOURCES, *plugins])
            raise InvalidValue(f"unknown task source '{value}'; use one of {names} (or install its plugin)")
        return value


class SchedulerSection(Section):
    """Recovering-rewards task scheduler (used when tasks.schedule is recovering or ucb)."""

    arms_per_round: int = Field(
        1, ge=1, le=64, description="K: task sources pulled per round (local questions split among them)."
    )
    max_gap: int = Field(
        8, ge=1, le=64, description="Idle rounds after which a source counts as fully recovered."
    )
    max_period: int = Field(6, ge=1, le=12, description="Longest period the offline plan considers.")
    ucb_c: float = Field(1.0, ge=0, le=100, description="UCB exploration coefficient (schedule 'ucb').")
    replan_every: int = Field(10, ge=1, le=100_000, description="Rounds per planning epoch.")
    prior: float = Field(
        1.0, ge=0, le=1, description="Optimistic estimate of a (source, idle time) never observed."
    )


class TasksSection(Section):
    sources: list[TaskSourceSpec] = Field(
        default_factory=lambda: [TaskSourceSpec()], min_length=1, description="Task sources to sample from."
    )
    schedule: Literal["fixed", "recovering", "ucb"] = Field(
        "fixed",
        description="Which sources each round's questions come from: 'fixed' = weighted random draw; "
        "'recovering' / 'ucb' = purely periodic plan over the sources from their estimated recovery of "
        "learning signal (Simchi-Levi et al. 2106.14813), plug-in or UCB estimates.",
    )
    scheduler: SchedulerSection = Field(default_factory=SchedulerSection)
    seed: int = Field(1234, ge=0, description="Dataset seed shared by the swarm (part of every TaskRef).")
    size: int = Field(1_000_000, ge=1, description="Items per dataset (indices wrap around).")
    eval_questions: int = Field(64, ge=0, le=100_000, description="Held-out questions for greedy eval.")


class GenerationSection(Section):
    backend: Literal["hf", "vllm"] = Field("hf", description="'hf' (transformers) or 'vllm' (GPU only).")
    num_completions: int = Field(8, ge=1, le=1024, description="G: completions sampled per question.")
    temperature: float = Field(1.0, gt=0, le=10, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling threshold.")
    max_new_tokens: int = Field(8, ge=1, le=65536, description="Maximum generated tokens per completion.")
    worker: Literal["auto", "process", "thread"] = Field(
        "auto",
        description="Where overlapped generation (trainer.max_staleness > 0, backend hf) runs: 'process' = a "
        "child process with the weights in shared memory (no GIL contention with training; it also writes the "
        "checkpoints), 'thread' = a thread of the node process with its own copy of the weights, 'auto' = "
        "process on CPU, thread on GPU. LoRA models always use the thread.",
    )


class TrainerSection(Section):
    lr: float = Field(3e-4, gt=0, le=1.0, description="Adam learning rate for the GRPO updates.")
    weight_decay: float = Field(0.0, ge=0, le=1.0, description="AdamW weight decay.")
    clip_low: float = Field(
        0.2, ge=0, le=1.0, description="PPO clip epsilon below 1 (ratio >= 1 - clip_low)."
    )
    clip_high: float = Field(
        0.28, ge=0, le=10.0, description="PPO clip epsilon above 1 (ratio <= 1 + clip_high)."
    )
    kl_coef: float = Field(0.0, ge=0, le=100.0, description="Weight of the KL penalty to a frozen reference.")
    advantage: Literal["grpo", "dr_grpo", "rloo", "batch_std"] = Field(
        "grpo", description="Advantage estimator: grpo (z-score), dr_grpo (no std), rloo, batch_std."
    )
    loss_agg: Literal["token_mean", "seq_mean", "constant"] = Field(
        "token_mean", description="Loss aggregation over tokens."
    )
    updates_per_round: int = Field(2, ge=1, le=64, description="Optimizer steps per round (minibatches).")
    micro_batch: int = Field(
        64, ge=1, le=65536, description="Sequences per forward pass (gradient accumulation)."
    )
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient norm clip.")
    stale_weight_cap: float = Field(
        2.0,
        ge=0,
        le=100,
        description="Cap of the importance weight pi_entry/pi_behaviour on stale samples (0 = no correction).",
    )
    lr_schedule: Literal["constant", "linear", "cosine"] = Field(
        "constant",
        description="Learning-rate schedule over optimizer steps (after warmup_steps of linear warm-up): "
        "constant, linear decay to 0, or cosine decay to 0 (transformers' formulas). Derived from the policy "
        "version (= optimizer steps taken), so it resumes exactly from a checkpoint.",
    )
    warmup_steps: int = Field(
        0, ge=0, le=10_000_000, description="Optimizer steps of linear learning-rate warm-up from 0."
    )
    schedule_steps: int = Field(
        0,
        ge=0,
        le=1_000_000_000,
        description="Optimizer steps the linear/cosine schedule spans (warm-up included); 0 = node.rounds x "
        "updates_per_round. Set it when you extend a run with more rounds and want the same schedule.",
    )
    mask_truncated_completions: bool = Field(
        False,
        description="Give completions that hit generation.max_new_tokens without an end-of-sequence token "
        "zero loss weight (TRL's mask_truncated_completions); they still count in the group's advantages.",
    )
    max_staleness: int = Field(
        1,
        ge=0,
        le=1,
        description="Rounds generation may run ahead of training: 1 = generate round r+1 while round r trains "
        "(samples one round of updates stale; checkpoints are written in the background), 0 = synchronous.",
    )


class RewardSpec(Section):
    name: str = Field(description="Registered reward module name (see `swarm-node rewards list`).")
    weight: float = Field(1.0, description="Weight in the combined reward.")
    params: dict[str, Any] = Field(default_factory=dict, description="Module parameters.")


class RewardsSection(Section):
    modules: list[RewardSpec] = Field(
        default_factory=lambda: [RewardSpec(name="exact_match", weight=1.0)],
        min_length=1,
        description="Reward modules combined by weighted sum into the training reward.",
    )
    report: list[str] = Field(
        default_factory=lambda: ["exact_match"],
        description="Extra modules scored for metrics only (exact-match accuracy is always reported).",
    )
    combine: dict[str, Any] | None = Field(
        None,
        description="Combination: {mode: weighted_sum|lsc_and|par|ensemble|gate, ...}; default weighted sum.",
    )
    credit: dict[str, Any] | None = Field(
        None,
        description="Credit assignment of step rewards: {mode: returns|strict_min|raw|sum_to_outcome, baseline}.",
    )
    segment: dict[str, Any] | None = Field(
        None,
        description="Step segmentation: {rule: regex|separator|lines|none, ...}; default ';' or blank line.",
    )
