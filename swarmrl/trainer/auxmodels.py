"""Trainable helper models that reward modules use through the scorer (issue 17), with checkpointable state.

* **online PRM** (OPRL, Liu et al. arXiv 2509.19199): a copy of the policy taken on first use, trained by
  the trajectory DPO loss against the current policy as pi_old; its log-prob ratio gives implicit step
  rewards. Costs one more model (weights + Adam state) in memory: cheap for small models, plan for it on
  big ones.
* **PRIME implicit PRM** (Cui et al. arXiv 2502.01456): the same kind of policy copy, trained by the
  cross-entropy loss on outcome labels ``BCE(sigmoid(beta * sum_t log pi_phi/pi_ref), y)`` with pi_ref the
  scorer's frozen reference (the starting policy); its log-ratio gives PRIME's token rewards.
* **token value head** (TVM, Lee et al. arXiv 2407.12863): a linear head on the policy's last hidden
  states (detached), sigmoid output, trained by per-token binary cross-entropy. The paper fine-tunes a whole
  model as the value model; a head on the policy's features is our cheaper choice (UNCONFIRMED).

Both live beside the policy on its device, are created lazily by key, and are saved in the node checkpoint
(``state_dict`` / ``load_state_dict``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from swarmrl.errors import RewardError
from swarmrl.trainer.grpo import selective_log_softmax
from swarmrl.trainer.policy import Policy
from swarmrl.trainer.prompts import prompt_ids

Row = tuple[list[int], list[int]]


@dataclass
class _Trainable:
    module: torch.nn.Module
    optimizer: torch.optim.Optimizer
    lr: float


def _clone(state: Any) -> Any:
    if isinstance(state, torch.Tensor):
        return state.detach().clone()
    if isinstance(state, dict):
        return {k: _clone(v) for k, v in state.items()}
    if isinstance(state, list | tuple):
        return type(state)(_clone(v) for v in state)
    return copy.deepcopy(state)


class AuxModels:
    """Online PRMs and value heads by key, over one :class:`Policy`."""

    def __init__(self, policy: Policy, micro_batch: int = 64) -> None:
        self.policy = policy
        self.micro_batch = micro_batch
        self.prms: dict[str, _Trainable] = {}
        self.heads: dict[str, _Trainable] = {}

    # -- batching ---------------------------------------------------------------------------------------
    def rows(self, prompts: Sequence[str], completion_ids: Sequence[Sequence[int]]) -> list[Row]:
        if len(prompts) != len(completion_ids):
            raise RewardError(f"{len(prompts)} prompts for {len(completion_ids)} completions")
        return [
            (prompt_ids(self.policy.tokenizer, p), [int(t) for t in ids])
            for p, ids in zip(prompts, completion_ids, strict=True)
        ]

    def _pad(self, rows: Sequence[Row]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(c) + len(x) for c, x in rows)
        ids = torch.full((len(rows), width), self.policy.pad_id, dtype=torch.long)
        attn = torch.zeros((len(rows), width), dtype=torch.long)
        for r, (ctx, comp) in enumerate(rows):
            seq = ctx + comp
            ids[r, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            attn[r, : len(seq)] = 1
        return ids.to(self.policy.device), attn.to(self.policy.device)

    def _seq_logps(self, model: torch.nn.Module, rows: Sequence[Row]) -> list[torch.Tensor]:
        """Per-token log-probs of each row's completion (a tensor per row; grad follows the caller)."""
        ids, attn = self._pad(rows)
        logps = selective_log_softmax(model(input_ids=ids, attention_mask=attn).logits[:, :-1], ids[:, 1:])
        return [logps[r, len(c) - 1 : len(c) + len(x) - 1] for r, (c, x) in enumerate(rows)]

    def _hidden(self, rows: Sequence[Row]) -> list[torch.Tensor]:
        """The policy's last hidden state at the position before each completion token (no grad)."""
        model = self.policy.model
        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                ids, attn = self._pad(rows)
                h = model(input_ids=ids, attention_mask=attn, output_hidden_states=True).hidden_states[-1]
        finally:
            if was:
                model.train()
        return [h[r, len(c) - 1 : len(c) + len(x) - 1].float() for r, (c, x) in enumerate(rows)]

    def _chunks(self, rows: list[Row]) -> list[list[Row]]:
        todo = [r for r in rows if r[1]]
        return [todo[i : i + self.micro_batch] for i in range(0, len(todo), self.micro_batch)]

    # -- online PRM (OPRL) ------------------------------------------------------------------------------
    def _prm(self, key: str, lr: float = 1e-4) -> _Trainable:
        if key not in self.prms:
            module = copy.deepcopy(self.policy.model).train()
            for p in module.parameters():
                p.requires_grad_(True)
            self.prms[key] = _Trainable(module, torch.optim.Adam(module.parameters(), lr=lr), lr)
        return self.prms[key]

    def prm_token_logprobs(
        self, key: str, prompts: Sequence[str], completion_ids: Sequence[Sequence[int]]
    ) -> list[list[float]]:
        prm = self._prm(key).module
        rows = self.rows(prompts, completion_ids)
        out: dict[int, list[float]] = {}
        with torch.no_grad():
            for chunk in self._chunks(rows):
                for row, lp in zip(chunk, self._seq_logps(prm, chunk), strict=True):
                    out[id(row)] = [float(x) for x in lp.tolist()]
        return [out.get(id(r), []) for r in rows]

    def prm_dpo_step(
        self, key: str, pairs: Sequence[tuple[str, Sequence[int], Sequence[int]]], beta: float, lr: float
    ) -> float:
        """``-mean log sigma(beta * ((log pi_phi - log pi_old)(tau+) - (log pi_phi - log pi_old)(tau-)))``."""
        pairs = [p for p in pairs if p[1] and p[2]]
        if not pairs:
            return 0.0
        prm = self._prm(key, lr)
        for group in prm.optimizer.param_groups:
            group["lr"] = lr
        prm.lr = lr
        policy = self.policy.model
        total = 0.0
        prm.optimizer.zero_grad(set_to_none=True)
        step = max(1, self.micro_batch // 2)
        for start in range(0, len(pairs), step):
            chunk = pairs[start : start + step]
            rows = self.rows(
                [p for p, _, _ in chunk] * 2, [list(c) for _, c, _ in chunk] + [list(r) for _, _, r in chunk]
            )
            with torch.no_grad():
                was = policy.training
                policy.eval()
                try:
                    old = torch.stack([lp.sum() for lp in self._seq_logps(policy, rows)])
                finally:
                    if was:
                        policy.train()
            new = torch.stack([lp.sum() for lp in self._seq_logps(prm.module, rows)])
            ratio = new - old
            k = len(chunk)
            loss = -F.logsigmoid(beta * (ratio[:k] - ratio[k:])).sum() / len(pairs)
            loss.backward()
            total += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(prm.module.parameters(), 1.0)
        prm.optimizer.step()
        return total

    def prm_ce_step(
        self,
        key: str,
        rows: Sequence[Row],
        labels: Sequence[float],
        beta: float,
        lr: float,
        reference: torch.nn.Module,
    ) -> float:
        """PRIME's PRM update: one optimiser step of ``mean_i BCE(sigmoid(beta * sum_t (log pi_phi - log
        pi_ref)(y_i,t)), labels[i])`` over ``rows`` (prompt ids, completion ids); returns the loss (the value
        before the step). Rows without completion tokens are left out."""
        if len(labels) != len(rows):
            raise RewardError(f"{len(labels)} outcome labels for {len(rows)} completions")
        by_row = {id(r): float(y) for r, y in zip(rows, labels, strict=True)}
        chunks = self._chunks(list(rows))
        n = sum(len(c) for c in chunks)
        if n == 0:
            return 0.0
        prm = self._prm(key, lr)
        for group in prm.optimizer.param_groups:
            group["lr"] = lr
        prm.lr = lr
        prm.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for chunk in chunks:
            with torch.no_grad():
                was = reference.training
                reference.eval()
                try:
                    ref = torch.stack([lp.sum() for lp in self._seq_logps(reference, chunk)])
                finally:
                    if was:
                        reference.train()
            new = torch.stack([lp.sum() for lp in self._seq_logps(prm.module, chunk)])
            target = torch.tensor([by_row[id(r)] for r in chunk], dtype=new.dtype, device=new.device)
            logits = beta * (new - ref.to(new.dtype))
            loss = F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / n
            loss.backward()
            total += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(prm.module.parameters(), 1.0)
        prm.optimizer.step()
        prm.optimizer.zero_grad(set_to_none=True)
        return total

    # -- token value head (TVM) -------------------------------------------------------------------------
    def _head(self, key: str, hidden: int, lr: float = 1e-3) -> _Trainable:
        if key not in self.heads:
            head = torch.nn.Linear(hidden, 1).to(self.policy.device)
            torch.nn.init.zeros_(head.weight)
            torch.nn.init.zeros_(head.bias)
            self.heads[key] = _Trainable(head, torch.optim.Adam(head.parameters(), lr=lr), lr)
        return self.heads[key]

    def token_values(
        self, key: str, prompts: Sequence[str], completion_ids: Sequence[Sequence[int]]
    ) -> list[list[float]]:
        rows = self.rows(prompts, completion_ids)
        out: dict[int, list[float]] = {}
        for chunk in self._chunks(rows):
            hs = self._hidden(chunk)
            head = self._head(key, int(hs[0].shape[-1])).module
            with torch.no_grad():
                for row, h in zip(chunk, hs, strict=True):
                    out[id(row)] = [float(x) for x in torch.sigmoid(head(h).squeeze(-1)).tolist()]
        return [out.get(id(r), []) for r in rows]

    def fit_values(
        self,
        key: str,
        prompts: Sequence[str],
        completion_ids: Sequence[Sequence[int]],
        targets: Sequence[Sequence[float]],
        lr: float,
    ) -> float:
        rows = self.rows(prompts, completion_ids)
        if len(targets) != len(rows) or any(len(t) != len(r[1]) for t, r in zip(targets, rows, strict=True)):
            raise RewardError("value targets must have one value per completion token")
        by_row = {id(r): list(t) for r, t in zip(rows, targets, strict=True)}
        n_tok = sum(len(r[1]) for r in rows)
        if n_tok == 0:
            return 0.0
        total = 0.0
        trainable: _Trainable | None = None
        for chunk in self._chunks(rows):
            hs = self._hidden(chunk)
            if trainable is None:
                trainable = self._head(key, int(hs[0].shape[-1]), lr)
                trainable.optimizer.zero_grad(set_to_none=True)
            logits = torch.cat([trainable.module(h).squeeze(-1) for h in hs])
            target = torch.tensor(
                [v for row in chunk for v in by_row[id(row)]], dtype=logits.dtype, device=logits.device
            )
            loss = F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / n_tok
            loss.backward()
            total += float(loss.detach())
        if trainable is not None:
            for group in trainable.optimizer.param_groups:
                group["lr"] = lr
            trainable.lr = lr
            trainable.optimizer.step()
            trainable.optimizer.zero_grad(set_to_none=True)
        return total

    # -- checkpoint state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        def pack(t: _Trainable) -> dict[str, Any]:
            return {
                "model": _clone(t.module.state_dict()),
                "optimizer": _clone(t.optimizer.state_dict()),
                "lr": t.lr,
            }

        return {
            "prm": {k: pack(t) for k, t in self.prms.items()},
            "value": {k: pack(t) for k, t in self.heads.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, saved in (state.get("prm") or {}).items():
            prm = self._prm(key, float(saved["lr"]))
            prm.module.load_state_dict(saved["model"])
            prm.optimizer.load_state_dict(saved["optimizer"])
        for key, saved in (state.get("value") or {}).items():
            hidden = int(saved["model"]["weight"].shape[-1])
            head = self._head(key, hidden, float(saved["lr"]))
            head.module.load_state_dict(saved["model"])
            head.optimizer.load_state_dict(saved["optimizer"])
