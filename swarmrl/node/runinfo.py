"""``DATA/node.json``: where a running node can be reached (pid, metrics URL, control address, peer id,
listen addresses).

Ports default to 0 (any free port), so nobody can guess them: the node writes this file once everything is
bound, and ``swarm-node status|peers --data-dir D`` and ``local-swarm`` read it back. The file is replaced
atomically (write a temporary file, fsync, rename), so a reader never sees half of it, and it is removed on
a clean stop; after a crash it stays behind with a dead pid, which ``read_run_info`` reports.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from swarmrl.errors import InvalidValue, NodeError

FILE_NAME = "node.json"


@dataclass(frozen=True, slots=True)
class RunInfo:
    """How to reach one running node. ``control`` is ``host:port`` ('' when the control service is off)."""

    pid: int
    name: str = ""
    metrics_url: str = ""
    control: str = ""
    peer_id: str = ""
    listen_addrs: list[str] = field(default_factory=list)
    transport: str = "none"
    swarm_id: str = ""
    started_unix: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunInfo:
        addrs = data.get("listen_addrs", [])
        if not isinstance(data.get("pid"), int) or not isinstance(addrs, list):
            raise InvalidValue("'pid' must be an integer and 'listen_addrs' a list")
        return cls(
            pid=int(data["pid"]),
            name=str(data.get("name", "")),
            metrics_url=str(data.get("metrics_url", "")),
            control=str(data.get("control", "")),
            peer_id=str(data.get("peer_id", "")),
            listen_addrs=[str(a) for a in addrs],
            transport=str(data.get("transport", "none")),
            swarm_id=str(data.get("swarm_id", "")),
            started_unix=float(data.get("started_unix", 0.0)),
        )


def run_info_path(data_dir: Path) -> Path:
    return Path(data_dir).expanduser() / FILE_NAME


def write_run_info(data_dir: Path, info: RunInfo) -> Path:
    """Atomically replace ``DATA/node.json`` with ``info``; returns its path."""
    target = run_info_path(data_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".node.json.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(info.to_json())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def read_run_info(data_dir: Path) -> RunInfo:
    """The run info of the node using ``data_dir``; NodeError (saying what to do) when there is none."""
    path = run_info_path(data_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NodeError(
            f"no running node found: '{path}' does not exist; start one with "
            f"`swarm-node run --data-dir {data_dir}` or pass --control HOST:PORT"
        ) from None
    except OSError as exc:
        raise NodeError(f"cannot read '{path}': {exc.strerror}") from None
    try:
        return RunInfo.from_dict(json.loads(text))
    except (ValueError, TypeError, KeyError) as exc:
        raise NodeError(
            f"'{path}' is not a valid node.json ({exc}); restart the node to rewrite it"
        ) from None


def remove_run_info(data_dir: Path, pid: int) -> None:
    """Remove ``DATA/node.json`` if it still belongs to process ``pid`` (never another node's file)."""
    path = run_info_path(data_dir)
    try:
        current = RunInfo.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, KeyError):
        return
    if current.pid == pid:
        path.unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists (it may belong to someone else)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
