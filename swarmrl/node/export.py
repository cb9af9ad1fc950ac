"""``swarm-node export``: a node's checkpoint as a Hugging Face model directory, optionally pushed to the hub.

The directory holds ``config.json``, ``model.safetensors``, the tokenizer files, ``generation_config.json``, a
model card (``README.md``) and ``swarmrl-export.json`` (tasks and generation settings, for ``swarm-node eval
--model``). LoRA adapters are merged into the weights. Everything is written into a temporary directory
beside the target and renamed into place at the end, so a failure (or a failed push) leaves nothing behind.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from swarmrl import __version__
from swarmrl.config import NodeConfig
from swarmrl.errors import ConfigError, ExportError
from swarmrl.node.journal import read_journal
from swarmrl.node.model_card import CardFacts, model_card
from swarmrl.node.saved_config import read_node_config
from swarmrl.trainer.trained import TrainedPolicy, is_peft, load_trained_policy, merged_model

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
EXPORT_INFO = "swarmrl-export.json"


@dataclass(frozen=True)
class ExportResult:
    out: Path | None
    round: int
    policy_version: int
    dtype: str
    lora_merged: bool
    files: tuple[str, ...]
    pushed_to: str | None = None

    def line(self) -> str:
        where = f"wrote {self.out}" if self.out is not None else "exported"
        text = (
            f"{where}: round {self.round}, policy version {self.policy_version}, {self.dtype}"
            f"{', LoRA merged' if self.lora_merged else ''} ({', '.join(self.files)})"
        )
        if self.pushed_to:
            text += f"; pushed to https://huggingface.co/{self.pushed_to}"
        return text


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _tokenizer_for_export(tokenizer: Any) -> Any:
    """The policy's tokenizer, made to build the node's prompts by itself.

    A plain (non-chat) model is prompted with ``<bos>question`` (``swarmrl.trainer.prompts``); a tokenizer that
    does not add its bos token on its own (the embedded character tokenizer) gets a post-processor that does,
    so ``tokenizer(question)`` in plain transformers gives exactly the node's prompt ids. The node itself
    tokenizes with ``add_special_tokens=False`` and is unaffected.
    """
    tok = copy.deepcopy(tokenizer)
    bos, bos_id = tok.bos_token, tok.bos_token_id
    if getattr(tok, "chat_template", None) or bos is None or bos_id is None:
        return tok
    probe = tok("1", add_special_tokens=True)["input_ids"]
    backend = getattr(tok, "backend_tokenizer", None)
    if (probe and probe[0] == bos_id) or backend is None:
        return tok
    from tokenizers import processors

    backend.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B:1", special_tokens=[(bos, int(bos_id))]
    )
    return tok


def _generation_config(cfg: NodeConfig, tokenizer: Any) -> Any:
    from transformers import GenerationConfig

    g = cfg.generation
    return GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=True,
        temperature=g.temperature,
        top_p=g.top_p,
        top_k=0,  # the node samples from the full (top-p) distribution
        max_new_tokens=g.max_new_tokens,
    )


def write_model_dir(
    target: Path, cfg: NodeConfig, trained: TrainedPolicy, dtype: torch.dtype, journal: list[dict[str, Any]]
) -> tuple[str, ...]:
    """Write the model directory into ``target`` (an empty directory); returns the file names written."""
    policy = trained.policy
    lora = is_peft(policy.model)
    model = merged_model(policy.model).to(dtype)  # type: ignore[arg-type]
    model.eval()
    model.config.use_cache = True
    model.save_pretrained(target)
    tokenizer = _tokenizer_for_export(policy.tokenizer)
    tokenizer.save_pretrained(target)
    _generation_config(cfg, tokenizer).save_pretrained(target)
    facts = CardFacts(
        round=trained.round,
        policy_version=trained.policy_version,
        dtype=dtype_name(dtype),
        lora_merged=lora,
        parameters=sum(p.numel() for p in model.parameters()),
        architecture=type(model).__name__,
    )
    (target / "README.md").write_text(model_card(cfg, facts, journal), encoding="utf-8")
    info = {
        "format": 1,
        "swarmrl_version": __version__,
        "base_model": cfg.model.name,
        "round": trained.round,
        "policy_version": trained.policy_version,
        "dtype": facts.dtype,
        "lora_merged": lora,
        "lora_rank": cfg.model.lora_rank,
        "tasks": cfg.tasks.model_dump(mode="json"),
        "generation": cfg.generation.model_dump(mode="json"),
        "rewards": cfg.rewards.model_dump(mode="json"),
    }
    (target / EXPORT_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return tuple(sorted(p.name for p in target.iterdir()))


def push_folder(folder: Path, repo_id: str, private: bool, message: str) -> None:
    """Upload ``folder`` to the hub model repo ``repo_id`` (created when missing). One-line error otherwise."""
    try:
        from huggingface_hub import HfApi
        from huggingface_hub.utils import validate_repo_id
    except ImportError as exc:  # pragma: no cover - a dependency
        raise ExportError("--push-to-hub needs huggingface_hub: pip install huggingface_hub") from exc
    try:
        validate_repo_id(repo_id)
    except ValueError as exc:
        raise ConfigError("--push-to-hub", f"'{repo_id}' is not a hub repo id ('user/name'): {exc}") from None
    api = HfApi()
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model", commit_message=message)
    except Exception as exc:  # network, auth, offline mode, server errors: all end the same way
        reason = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ExportError(
            f"push to the hub failed for '{repo_id}' ({type(exc).__name__}: {reason}); nothing was written "
            "(check network access and `huggingface-cli login`, or export without --push-to-hub)"
        ) from None


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError("--out", f"'{out}' exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ConfigError("--out", f"'{out}' exists and is not empty; pass --force to replace it")


def _publish_modes(folder: Path) -> None:
    """Ordinary permissions (a temp directory is created 0700, some writers create files 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for f in folder.iterdir():
        f.chmod(0o666 & ~umask)


def _install(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out`` (an existing ``out`` is moved aside first and removed after)."""
    old: Path | None = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except OSError:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export_model(
    data_dir: Path,
    out: Path | None,
    *,
    checkpoint: int | None = None,
    dtype: str | None = None,
    push_to_hub: str | None = None,
    private: bool = False,
    config: Path | None = None,
    force: bool = False,
) -> ExportResult:
    """Export checkpoint ``checkpoint`` (default: newest valid) of the node in ``data_dir``."""
    if out is None and push_to_hub is None:
        raise ConfigError("--out", "give --out DIR, --push-to-hub REPO_ID, or both")
    if dtype is not None and dtype not in DTYPES:
        raise ConfigError("--dtype", f"must be one of {sorted(DTYPES)}, not {dtype!r}")
    if out is not None:
        out = out.expanduser().resolve()
        _check_out(out, force)
    data_dir = Path(data_dir).expanduser()
    cfg = read_node_config(data_dir, config)
    # On the CPU in float32 (LoRA merges without rounding), then cast to the dtype asked for.
    trained = load_trained_policy(cfg, data_dir, checkpoint, device="cpu", dtype="float32")
    target_dtype = DTYPES[dtype] if dtype is not None else trained.trained_dtype
    journal = read_journal(data_dir / "journal.log")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.export-", dir=out.parent))
    else:
        tmp = Path(tempfile.mkdtemp(prefix="swarmrl-export-"))
    try:
        files = write_model_dir(tmp, cfg, trained, target_dtype, journal)
        _publish_modes(tmp)
        if push_to_hub is not None:
            message = f"swarmrl export: round {trained.round}, policy version {trained.policy_version}"
            push_folder(tmp, push_to_hub, private, message)
        if out is not None:
            _install(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ExportResult(
        out=out,
        round=trained.round,
        policy_version=trained.policy_version,
        dtype=dtype_name(target_dtype),
        lora_merged=is_peft(trained.policy.model),
        files=files,
        pushed_to=push_to_hub,
    )
