"""Errors raised by swarmrl. Every message says what went wrong and how to fix it."""

from __future__ import annotations


class SwarmRLError(Exception):
    """Root of every error swarmrl raises on purpose."""


class ConfigError(SwarmRLError):
    """A configuration value is invalid. ``field`` is the dotted path of the offending field."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"config error at '{field}': {message}")


class InvalidValue(SwarmRLError, ValueError):
    """An argument or config value outside what is accepted. Also a ``ValueError``, so pydantic validators
    that raise it report it under the offending field's path."""


class TaskError(SwarmRLError):
    """A task source cannot produce or regenerate a task."""


class TaskConfigError(TaskError):
    """A task source's configuration is invalid. ``field`` is the path inside the source's spec
    (``config.answer_field``), so the config check can name ``tasks.sources[i].config.answer_field``."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


class DatasetUnavailableError(TaskError):
    """A peer's task comes from a data file this node does not hold (or holds with other contents), so its
    question and answer cannot be regenerated here: the group is unverifiable, not a lie."""


class ModelError(SwarmRLError):
    """A policy model or tokenizer cannot be loaded or built."""


class RewardError(SwarmRLError):
    """A reward module is unknown, misconfigured or returned malformed output."""


class CheckpointError(SwarmRLError):
    """A checkpoint is missing, truncated or corrupt."""


class JournalError(SwarmRLError):
    """The journal cannot be written or read."""


class ProtocolError(SwarmRLError):
    """A wire message is malformed, oversized, unsigned or otherwise invalid.

    ``reason`` is the short label used in ``swarmrl_rollouts_rejected_total{reason=...}``.
    """

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {message}")


class IdentityError(SwarmRLError):
    """The node's identity key file is missing, unreadable, unsafe or not an ed25519 key."""


class TransportError(SwarmRLError):
    """A transport (libp2p, gRPC, memory) failed to start or to send."""


class NodeError(SwarmRLError):
    """The node daemon cannot start or continue."""


class ExportError(SwarmRLError):
    """A trained model cannot be exported, written or pushed to the hub."""
