"""Local reward models: a Hugging Face sequence-classification model scoring (prompt, completion) texts.

The node builds one :class:`RewardModel` per ``rewards.reward_models`` entry and writes its scores into
``Sample.extras`` before the reward pipeline runs. :func:`fit_reward_model` trains a small one from labelled
texts (the tests and benchmarks build theirs with it; any model saved with ``save_pretrained`` works).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from swarmrl.config.scorers import RewardModelSpec
from swarmrl.errors import ModelError
from swarmrl.trainer.policy import resolve_device, resolve_dtype, save_model_dir

log = logging.getLogger(__name__)


class RewardModel:
    """One loaded reward model (eval mode, no gradients)."""

    def __init__(self, spec: RewardModelSpec) -> None:
        self.spec = spec
        self.device = resolve_device(spec.device)
        dtype = resolve_dtype(spec.dtype, self.device)
        local = Path(spec.path).expanduser()
        source = str(local) if local.is_dir() else spec.path
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=spec.trust_remote_code)
            self.model = AutoModelForSequenceClassification.from_pretrained(
                source, dtype=dtype, trust_remote_code=spec.trust_remote_code
            )
        except (OSError, ValueError) as exc:
            raise ModelError(
                f"rewards.reward_models '{spec.name}': cannot load '{spec.path}' as a sequence-classification "
                f"model: {exc}"
            ) from exc
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        labels = int(self.model.config.num_labels)
        if spec.label >= labels:
            raise ModelError(
                f"rewards.reward_models '{spec.name}': label {spec.label} but the model has {labels} outputs"
            )
        self.tokenizer.truncation_side = "left"  # keep the completion's end
        self.model.to(self.device)  # type: ignore[arg-type]
        self.model.eval()

    def score_texts(self, texts: Sequence[str]) -> list[float]:
        out: list[float] = []
        bs = self.spec.batch_size
        for start in range(0, len(texts), bs):
            batch = list(texts[start : start + bs])
            enc = self.tokenizer(
                batch, return_tensors="pt", padding=True, truncation=True, max_length=self.spec.max_length
            ).to(self.device)
            with torch.no_grad():
                logits = self.model(**enc).logits[:, self.spec.label].float()
            if self.spec.activation == "sigmoid":
                logits = torch.sigmoid(logits)
            out.extend(float(v) for v in logits.cpu())
        return [v if math.isfinite(v) else 0.0 for v in out]

    def text(self, prompt: str, completion: str) -> str:
        return self.spec.template.replace("{prompt}", prompt).replace("{completion}", completion)

    def score(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        return self.score_texts([self.text(p, c) for p, c in zip(prompts, completions, strict=True)])


def fit_reward_model(
    out: Path,
    texts: Sequence[str],
    labels: Sequence[float],
    *,
    steps: int = 60,
    batch: int = 32,
    lr: float = 3e-3,
    hidden_size: int = 32,
    layers: int = 1,
    seed: int = 0,
    loss: str = "bce",
) -> float:
    """Train a tiny Qwen2 sequence classifier (one output logit) over the embedded character tokenizer and
    save it with its tokenizer to ``out``; returns the last training loss. ``loss``: ``bce`` (labels in
    [0, 1], the logit is their log-odds) or ``mse`` (regression on the labels)."""
    from transformers import Qwen2ForSequenceClassification

    from swarmrl.trainer.policy import tiny_qwen2_config
    from swarmrl.trainer.tokenizer import build_char_tokenizer

    if loss not in ("bce", "mse"):
        raise ModelError(f"fit_reward_model: loss must be bce or mse, not {loss!r}")
    if len(texts) != len(labels) or not texts:
        raise ModelError("fit_reward_model needs as many labels as texts (and at least one)")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    tokenizer = build_char_tokenizer()
    config = tiny_qwen2_config(
        tokenizer,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        layers=layers,
        heads=2,
        num_labels=1,
        max_position_embeddings=512,
        tie_word_embeddings=False,
    )
    model = Qwen2ForSequenceClassification(config)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    pairs = list(zip(texts, labels, strict=True))
    loss_value = float("nan")
    model.train()
    for _ in range(steps):
        chunk = rng.sample(pairs, min(batch, len(pairs)))
        enc = tokenizer([t for t, _ in chunk], return_tensors="pt", padding=True)
        target = torch.tensor([float(y) for _, y in chunk])
        pred = model(**enc).logits[:, 0]
        if loss == "bce":
            value = torch.nn.functional.binary_cross_entropy_with_logits(pred, target)
        else:
            value = torch.nn.functional.mse_loss(pred, target)
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        loss_value = float(value.detach())
    model.eval()
    save_model_dir(model, tokenizer, out)
    log.info("reward model saved to %s (loss %.4f)", out, loss_value)
    return loss_value
