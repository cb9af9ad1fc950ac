"""vLLM generation backend (GPU): an in-process ``vllm.LLM`` that samples from token-id prompts, returns the
log-probs of the sampled tokens, and takes the policy's new weights in place after every optimizer step.

vLLM is optional (``pip install 'swarmrl[gpu]'``) and imported lazily; a missing or unusable vLLM raises
``ModelError`` with what to do. The engine runs in this process (``distributed_executor_backend=
"external_launcher"``, as a single-rank group), which is what lets ``sync_weights`` reach the engine's model
object and call its ``load_weights`` with our tensors: no engine restart, no copy through disk.

Behaviour log-probs are vLLM's ``raw_logprobs``: log-softmax of the raw logits, before temperature and top-p,
the same quantity ``HFGenerator`` returns and the learner uses.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

import torch

from swarmrl.errors import ModelError
from swarmrl.protocol.types import Completion
from swarmrl.trainer.generation import SamplingParams
from swarmrl.trainer.policy import Policy

log = logging.getLogger(__name__)

# Where the engine's torch model lives, by vLLM version (the executor's driver worker forwards attributes to
# its worker in the V1 engine; older layouts are listed after).
_MODEL_PATHS: tuple[tuple[str, ...], ...] = (
    ("llm_engine", "model_executor", "driver_worker", "model_runner", "model"),
    ("llm_engine", "model_executor", "driver_worker", "worker", "model_runner", "model"),
    (
        "llm_engine",
        "engine_core",
        "engine_core",
        "model_executor",
        "driver_worker",
        "worker",
        "model_runner",
        "model",
    ),
)

_DTYPES = {torch.bfloat16: "bfloat16", torch.float16: "float16", torch.float32: "float32"}


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise ModelError(
            "generation.backend is 'vllm' but vllm is not installed: pip install 'swarmrl[gpu]' "
            "(needs a CUDA GPU), or use generation.backend 'hf'"
        ) from exc
    return vllm


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _single_rank_env() -> None:
    """The rendezvous variables an in-process (external launcher) engine reads; existing values are kept."""
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(_free_port()))


def model_source(policy: Policy) -> str:
    """The directory (or hub id) the policy was loaded from: vLLM builds its engine from the same files."""
    model = policy.model
    get_base = getattr(model, "get_base_model", None)
    base = get_base() if callable(get_base) else model
    source = str(
        getattr(base, "name_or_path", "") or getattr(getattr(base, "config", None), "_name_or_path", "")
    )
    if not source:
        raise ModelError(
            "the vllm backend needs a policy loaded from a directory or hub id (save_pretrained() it first)"
        )
    return source


def named_weights(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) pairs in Hugging Face naming, which vLLM's model loaders map to their own layout.

    For a peft model the adapters must be merged by the caller first; base-layer names are unwrapped and
    adapter tensors skipped.
    """
    get_base = getattr(model, "get_base_model", None)
    base = get_base() if callable(get_base) else model
    for name, param in base.named_parameters():
        if "lora_" in name or "modules_to_save" in name:
            continue
        yield name.replace(".base_layer", ""), param.detach()


class VLLMGenerator:
    """``Generator`` backed by vLLM; ``sync_weights`` pushes the policy's current weights into the engine.

    ``gpu_memory_utilization`` is the share of GPU memory vLLM may take (weights and KV cache); the policy
    and its optimizer live beside it on the same GPU, so keep it modest. ``enforce_eager`` skips CUDA-graph
    capture (faster start, slower decoding).
    """

    def __init__(
        self,
        policy: Policy,
        gpu_memory_utilization: float = 0.3,
        enforce_eager: bool = False,
        max_model_len: int | None = None,
        seed: int | None = None,
    ) -> None:
        if not torch.cuda.is_available():
            raise ModelError("generation.backend 'vllm' needs a CUDA GPU; use generation.backend 'hf' on CPU")
        vllm = _import_vllm()
        self.policy = policy
        self._vllm = vllm
        # With trainer.max_staleness 1 the next round's generation (a thread) overlaps training, whose
        # sync_weights must not load weights into the engine mid-generation: one engine call at a time.
        self._lock = threading.Lock()
        dtype = next(policy.model.parameters()).dtype
        kwargs: dict[str, Any] = {
            "model": model_source(policy),
            "dtype": _DTYPES.get(dtype, "bfloat16"),
            "gpu_memory_utilization": gpu_memory_utilization,
            "enforce_eager": enforce_eager,
            "skip_tokenizer_init": True,  # we send token ids and decode with the policy's tokenizer
            "seed": int(seed if seed is not None else torch.initial_seed() % (2**31)),
            "distributed_executor_backend": "external_launcher",
            "logprobs_mode": "raw_logprobs",
        }
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        _single_rank_env()
        try:
            self.llm = vllm.LLM(**kwargs)
        except TypeError as exc:  # an older vLLM without logprobs_mode (its logprobs are raw already in V1)
            if "logprobs_mode" not in str(exc):
                raise ModelError(f"cannot start vLLM: {exc}") from exc
            kwargs.pop("logprobs_mode")
            log.warning("this vLLM has no logprobs_mode; assuming raw log-probs")
            self.llm = vllm.LLM(**kwargs)
        self._engine_model = self._find_engine_model()
        self.sync_weights()  # the policy may hold newer weights than its files (resumed from a checkpoint)

    # -- weights --------------------------------------------------------------------------------------------
    def _find_engine_model(self) -> Any:
        for path in _MODEL_PATHS:
            obj: Any = self.llm
            for attr in path:
                obj = getattr(obj, attr, None)
                if obj is None:
                    break
            if obj is not None and hasattr(obj, "load_weights"):
                return obj
        if hasattr(self.llm, "collective_rpc"):
            return None  # reach it through collective_rpc instead
        raise ModelError(
            "cannot reach the vLLM engine's model to update its weights; this vLLM version is not supported "
            "(tried llm_engine.model_executor.driver_worker[.worker].model_runner.model and collective_rpc)"
        )

    @torch.no_grad()
    def sync_weights(self) -> None:
        """Load the policy's current weights into the engine in place and drop cached prefixes."""
        with self._lock:
            self._sync_weights()

    def _sync_weights(self) -> None:
        model = self.policy.model
        merge = getattr(model, "merge_adapter", None)
        if callable(merge):
            merge()
        try:
            if self._engine_model is not None:
                self._engine_model.load_weights(named_weights(model))
            else:
                weights = [(n, t.cpu()) for n, t in named_weights(model)]
                self.llm.collective_rpc(_load_weights_on_worker, args=(weights,))
        finally:
            unmerge = getattr(model, "unmerge_adapter", None)
            if callable(merge) and callable(unmerge):
                unmerge()
        reset = getattr(self.llm, "reset_prefix_cache", None)
        if callable(reset):
            reset()  # cached KV of shared prefixes was computed with the old weights

    # -- generation -----------------------------------------------------------------------------------------
    def _sampling_params(self, params: SamplingParams) -> Any:
        eos = self.policy.eos_id
        common: dict[str, Any] = {
            "max_tokens": params.max_new_tokens,
            "logprobs": 0,  # the sampled token's own log-prob only
            "stop_token_ids": [eos],
            "detokenize": False,
        }
        if params.greedy:
            return self._vllm.SamplingParams(n=1, temperature=0.0, **common)
        return self._vllm.SamplingParams(
            n=params.n, temperature=params.temperature, top_p=params.top_p, **common
        )

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[list[Completion]]:
        requests = [{"prompt_token_ids": list(p)} for p in prompts]
        with self._lock:
            outputs = self.llm.generate(
                requests, sampling_params=self._sampling_params(params), use_tqdm=False
            )
        if len(outputs) != len(prompts):
            raise ModelError(f"vLLM returned {len(outputs)} results for {len(prompts)} prompts")
        return [[self._completion(o) for o in out.outputs] for out in outputs]

    def _completion(self, out: Any) -> Completion:
        eos = self.policy.eos_id
        toks = [int(t) for t in out.token_ids]
        logps: list[float] = []
        for tok, entry in zip(toks, out.logprobs or [], strict=False):
            item = entry.get(tok) if isinstance(entry, dict) else None
            if item is None:
                logps = []
                break
            logps.append(float(item.logprob))
        finished = bool(toks) and toks[-1] == eos
        if not finished and getattr(out, "finish_reason", None) == "stop" and eos not in toks:
            # Stopped on eos without listing it: append it; its log-prob is unknown, so let the learner
            # compute all behaviour log-probs for this completion (empty list).
            toks.append(eos)
            finished, logps = True, []
        if len(logps) != len(toks):
            logps = []
        body = toks[:-1] if finished else toks
        text = str(self.policy.tokenizer.decode(body, skip_special_tokens=True))
        return Completion(text=text, token_ids=toks, logprobs=logps, finished=finished)


def _load_weights_on_worker(worker: Any, weights: list[tuple[str, torch.Tensor]]) -> None:
    """Runs inside a vLLM worker (collective_rpc): load ``weights`` into its model."""
    worker.model_runner.model.load_weights(weights)
