"""Logging set-up: human-readable on a terminal, one JSON object per line for log collectors.

In JSON mode every line the process writes to stderr is a JSON object: log records, Python warnings
(``logging.captureWarnings``), uncaught exceptions in any thread (logged with their traceback in ``exc``),
the CLI's final error line (``error_line``), and the round progress (the live terminal display is off).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
_log = logging.getLogger("swarmrl")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, time (UTC), level, logger, msg, node, any ``extra`` fields, exc."""

    def __init__(self, node: str = "") -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if self.node:
            out["node"] = self.node
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = value if isinstance(value, (int, float, str, bool, type(None))) else str(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def json_logging_active() -> bool:
    """True when the root logger writes JSON lines (so nothing else may write free text to stderr)."""
    return any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers)


def json_requested(argv: Sequence[str], env: Mapping[str, str]) -> bool:
    """Whether this invocation asked for JSON logs, for errors raised before logging is set up."""
    args = list(argv)
    for i, arg in enumerate(args):
        if arg == "--log-format=json" or (arg == "--log-format" and args[i + 1 : i + 2] == ["json"]):
            return True
    return env.get("SWARMRL_NODE__LOG_FORMAT", "").strip().lower() == "json"


def error_line(message: str, argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> str:
    """The CLI's last words on a failure: ``error: ...`` or, when JSON logs are on or asked for, a JSON line."""
    if json_logging_active() or json_requested(
        sys.argv[1:] if argv is None else argv, os.environ if env is None else env
    ):
        now = time.time()
        return json.dumps(
            {
                "ts": round(now, 3),
                "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)),
                "level": "error",
                "logger": "swarmrl.cli",
                "msg": message,
            }
        )
    return f"error: {message}"


def _log_uncaught(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None, where: str
) -> None:
    _log.critical("uncaught %s in %s: %s", exc_type.__name__, where, exc, exc_info=(exc_type, exc, tb))


def _install_json_excepthooks() -> None:
    """Uncaught exceptions (main thread and others) become JSON records instead of raw tracebacks."""

    def main_hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        _log_uncaught(exc_type, exc, tb, "main thread")

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is None or issubclass(args.exc_type, SystemExit):
            return
        name = args.thread.name if args.thread is not None else "a thread"
        _log_uncaught(args.exc_type, args.exc_value, args.exc_traceback, f"thread {name}")

    sys.excepthook = main_hook
    threading.excepthook = thread_hook


class CappedFileHandler(logging.handlers.RotatingFileHandler):
    """A log file that rotates at ``max_bytes`` keeping ``keep`` old files; with ``keep`` 0 it starts over."""

    def __init__(self, path: Path, max_bytes: int, keep: int) -> None:
        super().__init__(path, maxBytes=max_bytes, backupCount=keep, encoding="utf-8")

    def doRollover(self) -> None:
        if self.backupCount > 0:
            super().doRollover()
            return
        if self.stream:
            self.stream.close()
        self.stream = open(self.baseFilename, "w", encoding=self.encoding)  # noqa: SIM115


def setup_logging(
    fmt: str = "text",
    level: str = "info",
    node: str = "",
    file: Path | None = None,
    max_bytes: int = 0,
    keep: int = 0,
) -> None:
    """Configure the root logger once per process (the CLI calls this; libraries never do).

    With ``file`` the records go to that file (rotated at ``max_bytes``, ``keep`` old files) instead of stderr.
    """
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    handler: logging.Handler
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        handler = CappedFileHandler(file, max_bytes, keep)
        if fmt == "json":
            handler.setFormatter(JsonFormatter(node))
            _install_json_excepthooks()
        else:
            prefix = f"[{node}] " if node else ""
            handler.setFormatter(
                logging.Formatter(f"%(asctime)s %(levelname)s {prefix}%(name)s: %(message)s")
            )
    elif fmt == "json":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter(node))
        _install_json_excepthooks()
    elif sys.stderr.isatty():
        from rich.logging import RichHandler

        handler = RichHandler(show_path=False, rich_tracebacks=True, log_time_format="%H:%M:%S")
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        prefix = f"[{node}] " if node else ""
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {prefix}%(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)  # warnings.warn(...) goes through the handler (JSON in JSON mode)
    for noisy in ("httpx", "urllib3", "filelock", "multiaddr", "libp2p", "grpc", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
