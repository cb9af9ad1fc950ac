"""Config of the scorers that fill ``Sample.extras`` before the reward pipeline runs: local reward models."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from swarmrl.config.base import Section


class RewardModelSpec(Section):
    """A local Hugging Face sequence-classification model scoring completions (``rewards.reward_models``).

    Its score of ``template`` (prompt and completion) goes to ``Sample.extras[key]``, where ``column``-style
    inputs (``column``, ``par``, ``lsc``, ``ensemble``, ``ctrl_u``, ``rpr_calibration``) read it. With
    ``ref_key`` it also scores reference completions -- the task's gold answer (``references: answer``) or
    the strings of a task column -- and writes their scores as a list to ``Sample.extras[ref_key]`` (the
    reference rewards of ``par`` and ``lsc``).
    """

    name: str = Field(
        min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$", description="Name of this reward model."
    )
    path: str = Field(min_length=1, description="Local directory (save_pretrained) or hub id of the model.")
    key: str = Field("", max_length=64, description="Sample.extras key of its score ('' = the name).")
    device: Literal["auto", "cpu", "cuda", "mps"] = Field("auto", description="Where it runs.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description="Weights dtype.")
    batch_size: int = Field(32, ge=1, le=4096, description="Texts per forward pass.")
    max_length: int = Field(512, ge=8, le=1_000_000, description="Tokens kept per text (the end is kept).")
    label: int = Field(0, ge=0, le=1024, description="Index of the output logit used as the score.")
    activation: Literal["none", "sigmoid"] = Field("none", description="Applied to that logit.")
    template: str = Field("{prompt}{completion}", description="Text scored: {prompt} and {completion}.")
    ref_key: str = Field(
        "", max_length=64, description="Extras key of reference-completion scores ('' = none)."
    )
    references: str = Field(
        "answer", min_length=1, description="Reference completions: 'answer' (gold) or a task column name."
    )
    trust_remote_code: bool = Field(False, description="Allow custom model code (off: safer).")

    @field_validator("template")
    @classmethod
    def _has_completion(cls, value: str) -> str:
        if "{completion}" not in value:
            raise ValueError("must contain '{completion}'")
        return value

    @model_validator(mode="after")
    def _two_keys(self) -> RewardModelSpec:
        if self.ref_key and self.ref_key == self.score_key:
            raise ValueError(f"ref_key '{self.ref_key}' is also the score key; use another name")
        return self

    @property
    def score_key(self) -> str:
        return self.key or self.name

    def keys(self) -> frozenset[str]:
        """The ``Sample.extras`` keys this model fills."""
        return frozenset({self.score_key, *([self.ref_key] if self.ref_key else [])})
