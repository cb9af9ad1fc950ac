"""The local policy: a Hugging Face causal LM and its tokenizer, by hub id, local path, or the embedded default.

The embedded default (``tiny-default``) is a small Qwen2-architecture model built from a config with a
character-level tokenizer built locally, warm-started by a short supervised pass on generated task solutions,
and cached in the data directory under a name derived from everything that determines it (reproducible from
its seed).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from swarmrl.config.sections import EMBEDDED_MODEL, ModelSection, TasksSection
from swarmrl.errors import ModelError

log = logging.getLogger(__name__)


@dataclass
class Policy:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    name: str

    @property
    def eos_id(self) -> int:
        return int(self.tokenizer.eos_token_id)  # type: ignore[arg-type]

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return int(pad if pad is not None else self.eos_id)  # type: ignore[arg-type]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("model.device is 'cuda' but no CUDA device is visible; use 'cpu' or 'auto'")
    if device == "mps" and not mps_available():
        raise ModelError(
            "model.device is 'mps' but this torch sees no Apple-silicon GPU (torch.backends.mps); use 'cpu'"
        )
    return torch.device(device)


def mps_available() -> bool:
    """Whether torch can use Apple's Metal backend here (never on Linux)."""
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def embedded_fingerprint(cfg: ModelSection, tasks: TasksSection, seed: int) -> str:
    """Digest of everything that determines the embedded model (architecture, warm start, tasks, seed)."""
    tiny = cfg.tiny.model_dump(mode="json")
    if tiny.get("warmstart_sources") is None:  # absent: digests of existing caches stay valid
        tiny.pop("warmstart_sources", None)
    blob = json.dumps(
        {"tiny": tiny, "tasks": tasks.model_dump(mode="json"), "seed": seed, "v": 1},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _load_pretrained(name: str, device: torch.device, dtype: torch.dtype, trust: bool) -> Policy:
    local = Path(name).expanduser()
    source = str(local) if local.is_dir() else name
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, trust_remote_code=trust)
    except OSError as exc:
        hint = (
            "check the directory holds config.json, weights and tokenizer files"
            if local.is_dir()
            else "check the hub id and network access, or pass a local directory saved with save_pretrained()"
        )
        raise ModelError(f"cannot load model '{name}': {exc}; {hint}") from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.eos_token_id is None:
        raise ModelError(f"tokenizer of '{name}' has no eos token; set one and save it again")
    model.to(device)  # type: ignore[arg-type]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return Policy(model=model, tokenizer=tokenizer, device=device, name=name)


#: transformers' model loading is not thread-safe (concurrent loads in one process fail with "Cannot copy out
#: of meta tensor"): nodes that share a process (simulations, tests) load one at a time. A lock, not state.
_LOAD_LOCK = threading.Lock()


def load_policy(cfg: ModelSection, tasks: TasksSection, data_dir: Path, seed: int) -> Policy:
    """Load the policy named by ``cfg.name``; build and cache the embedded default when asked for it."""
    with _LOAD_LOCK:
        return _load_policy(cfg, tasks, data_dir, seed)


def _load_policy(cfg: ModelSection, tasks: TasksSection, data_dir: Path, seed: int) -> Policy:
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    if cfg.name != EMBEDDED_MODEL:
        policy = _load_pretrained(cfg.name, device, dtype, cfg.trust_remote_code)
    else:
        cache = data_dir / "models" / f"{EMBEDDED_MODEL}-{embedded_fingerprint(cfg, tasks, seed)}"
        if not (cache / "config.json").is_file():
            build_embedded(cfg, tasks, seed, cache)
        policy = _load_pretrained(str(cache), device, dtype, False)
        policy.name = EMBEDDED_MODEL
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(policy.model)
    if cfg.lora_rank > 0:
        policy.model = _with_lora(policy.model, cfg)
    return policy


def enable_gradient_checkpointing(model: PreTrainedModel) -> None:
    """transformers' activation checkpointing (non-reentrant: works with frozen embeddings under LoRA)."""
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise ModelError(
            f"{type(model).__name__} does not support gradient checkpointing; set "
            "model.gradient_checkpointing to false"
        )
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def lora_config(cfg: ModelSection) -> Any:
    """peft's LoraConfig for ``model.lora_*``: rank, alpha (default 2 x rank), dropout, target modules."""
    try:
        from peft import LoraConfig
    except ImportError as exc:
        raise ModelError("model.lora_rank > 0 needs peft: pip install 'swarmrl[gpu]' or peft") from exc
    alpha = cfg.lora_alpha if cfg.lora_alpha is not None else 2 * cfg.lora_rank
    targets = cfg.lora_target_modules
    return LoraConfig(
        r=cfg.lora_rank,
        lora_alpha=alpha,  # type: ignore[arg-type]
        lora_dropout=cfg.lora_dropout,
        target_modules=targets if isinstance(targets, str) else list(targets),
        task_type="CAUSAL_LM",
    )


def _with_lora(model: PreTrainedModel, cfg: ModelSection) -> Any:
    from peft import get_peft_model

    conf = lora_config(cfg)
    try:
        return get_peft_model(model, conf)
    except ValueError as exc:  # e.g. a target module name the model does not have
        raise ModelError(f"cannot add LoRA adapters (model.lora_target_modules): {exc}") from exc


def tiny_qwen2_config(
    tokenizer: PreTrainedTokenizerBase,
    *,
    hidden_size: int,
    intermediate_size: int,
    layers: int,
    heads: int,
    kv_heads: int | None = None,
    vocab_size: int | None = None,
    **extra: Any,
) -> Any:
    """A Qwen2 config for a small model over ``tokenizer`` (tied embeddings, the tokenizer's special ids).

    The embedded default, benchmarks and tests build their models from it; ``extra`` overrides any field.
    """
    from transformers import Qwen2Config

    fields: dict[str, Any] = {
        "vocab_size": vocab_size if vocab_size is not None else len(tokenizer),
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads if kv_heads is not None else heads,
        "max_position_embeddings": 128,
        "tie_word_embeddings": True,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    fields.update(extra)
    return Qwen2Config(**fields)


def save_model_dir(model: Any, tokenizer: Any, out: Path) -> None:
    """Save ``model`` and ``tokenizer`` with ``save_pretrained`` into a temporary sibling of ``out``, then
    rename it to ``out`` (replacing what was there)."""
    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)


def build_embedded(cfg: ModelSection, tasks: TasksSection, seed: int, out: Path) -> None:
    """Build the tiny model from a config, warm-start it, and save it atomically to ``out``."""
    from transformers import Qwen2ForCausalLM

    from swarmrl.trainer.tokenizer import build_char_tokenizer
    from swarmrl.trainer.warmstart import warm_start

    tiny = cfg.tiny
    tokenizer = build_char_tokenizer(tiny.vocab_extra)
    torch.manual_seed(seed)
    config = tiny_qwen2_config(
        tokenizer,
        hidden_size=tiny.hidden_size,
        intermediate_size=tiny.intermediate_size,
        layers=tiny.layers,
        heads=tiny.heads,
        max_position_embeddings=512,
    )
    model = Qwen2ForCausalLM(config)
    log.info(
        "building embedded model: %.2fM parameters, %d warm-start steps",
        sum(p.numel() for p in model.parameters()) / 1e6,
        tiny.warmstart_steps,
    )
    warm_start(model, tokenizer, tasks, tiny, seed)
    save_model_dir(model, tokenizer, out)
