"""Run untrusted Python solutions against unit tests in a separate, limited process.

Every run is a fresh ``python -I -S -B`` child in its own temporary working directory (deleted afterwards),
its own session (the whole process group is killed on the wall timeout), with a minimal environment, and:

* kernel limits it sets on itself before any submitted code runs: CPU seconds (``RLIMIT_CPU``), address
  space (``RLIMIT_AS``), size of any file it writes (``RLIMIT_FSIZE``), processes (``RLIMIT_NPROC``; the
  kernel ignores it for root), open files (``RLIMIT_NOFILE``), no core dumps;
* a Python audit hook, installed before the solution is compiled, that refuses sockets, every way of
  starting a process (``fork``, ``exec``, ``spawn``, ``system``, ``subprocess``), signalling other
  processes, loading native code (``ctypes``), adding audit hooks, and opening, creating, renaming or
  removing any file outside the working directory for writing;
* the strongest namespace isolation this machine offers (``isolation``), probed once per ``Sandbox``:
  ``bwrap`` (bubblewrap: read-only root, private ``/tmp``, no network, own PID namespace), else
  ``unshare`` (a network namespace with only a down loopback: no network even for native code; needs root
  or unprivileged user namespaces), else ``none`` (then sockets are refused by the audit hook only, which
  native code could bypass: say so to whoever runs peers' code).

The test results are one 0/1 per test (a test passes when its expression evaluates to ``True``), read line
by line as the child reports them on a private copy of its stdout, tagged with a per-run secret: the
solution's own output goes to ``/dev/null``, and the hook refuses the frame, ``gc`` and descriptor
introspection it would need to find the tag or the private stream. Tests that ran before a timeout or a
crash keep their results; the rest count as failed. What this does not stop: a solution written to game its
own tests from inside the process (an object whose ``__eq__`` always holds, patched builtins). The sandbox
protects the machine and the node; a test's verdict is only as strong as the test.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Isolation = Literal["auto", "bwrap", "unshare", "none"]

#: The child's program (run with ``-c``): limits, audit hook, then the solution and one line per test.
RUNNER = r"""
import json, os, resource, signal, sys
cfg = json.loads(sys.stdin.readline())
def lim(kind, value):
    try:
        resource.setrlimit(kind, (value, value))
    except (ValueError, OSError):
        pass
lim(resource.RLIMIT_CPU, int(cfg["cpu"]))
lim(resource.RLIMIT_AS, int(cfg["mem"]))
lim(resource.RLIMIT_FSIZE, int(cfg["fsize"]))
lim(resource.RLIMIT_NPROC, int(cfg["nproc"]))
lim(resource.RLIMIT_NOFILE, int(cfg["nofile"]))
lim(resource.RLIMIT_CORE, 0)
ROOT = os.path.realpath(os.getcwd())
WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
DENY = ("socket.", "os.fork", "os.forkpty", "os.exec", "os.spawn", "os.posix_spawn", "os.system",
        "subprocess.", "os.kill", "os.killpg", "signal.pthread_kill", "ctypes.", "sys.addaudithook",
        "os.setuid", "os.chroot", "_posixsubprocess", "sys._getframe", "sys._current_frames",
        "object.__getattr__", "gc.get_", "os.dup", "os.fdopen")
PATHS = ("os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.symlink",
         "os.link", "os.truncate", "os.utime", "shutil.rmtree", "os.replace")
def inside(path):
    if isinstance(path, int):
        return True
    p = os.path.realpath(os.fsdecode(path))
    return p == ROOT or p.startswith(ROOT + os.sep)
def hook(event, args):
    if event.startswith(DENY):
        raise PermissionError("sandbox: " + event + " is not allowed")
    if event == "open":
        path, mode, flags = args
        writing = (mode is not None and any(c in str(mode) for c in "wax+")) or (
            mode is None and isinstance(flags, int) and flags & WRITE)
        if writing and not inside(path):
            raise PermissionError("sandbox: writing outside the working directory is not allowed")
    elif event in PATHS:
        for p in args:
            if isinstance(p, (str, bytes)) and not inside(p):
                raise PermissionError("sandbox: " + event + " outside the working directory")
class Timeout(BaseException):
    pass
def alarm(signum, frame):
    raise Timeout()
def main(cfg):
    source, tests, per_test, tag = cfg.pop("source"), cfg.pop("tests"), float(cfg["per_test"]), cfg.pop("tag")
    out = os.fdopen(os.dup(1), "w")
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    signal.signal(signal.SIGALRM, alarm)
    _eval, _setitimer, _write, _flush = eval, signal.setitimer, out.write, out.flush
    sys.addaudithook(hook)
    ns = {"__name__": "solution", "__builtins__": __builtins__}
    try:
        exec(compile(source, "<solution>", "exec"), ns)
        compiled = True
    except BaseException:
        compiled = False
    for i, test in enumerate(tests):
        ok = False
        if compiled:
            _setitimer(signal.ITIMER_REAL, per_test)
            try:
                ok = _eval(test, ns) is True
            except BaseException:
                ok = False
            finally:
                _setitimer(signal.ITIMER_REAL, 0)
        _write("%s %d %d\n" % (tag, i, 1 if ok else 0))
        _flush()
main(cfg)
"""


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one run (all tests of one solution)."""

    cpu_seconds: int = 2
    wall_seconds: float = 5.0
    per_test_seconds: float = 1.0
    memory_mb: int = 256
    file_mb: int = 1
    nproc: int = 64
    open_files: int = 32


def _probe(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=10, stdin=subprocess.DEVNULL).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def detect_isolation(python: str = sys.executable) -> Literal["bwrap", "unshare", "none"]:
    """The strongest namespace isolation that works here (each candidate is tried once)."""
    probe = [python, "-I", "-S", "-c", "pass"]
    bwrap = shutil.which("bwrap")
    if bwrap and _probe([bwrap, *_bwrap_args("/tmp"), *probe]):
        return "bwrap"
    unshare = shutil.which("unshare")
    if unshare and _probe([unshare, "-n", "--", *probe]):
        return "unshare"
    if unshare and _probe([unshare, "-r", "-n", "--", *probe]):
        return "unshare"
    return "none"


def _bwrap_args(workdir: str) -> list[str]:
    return [
        "--ro-bind", "/", "/",
        "--dev", "/dev",
        "--proc", "/proc",
        "--tmpfs", "/tmp",
        "--bind", workdir, workdir,
        "--chdir", workdir,
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
    ]  # fmt: skip


class Sandbox:
    """Runs ``source`` and its tests in a child process under ``limits`` (see the module docstring)."""

    def __init__(
        self, limits: SandboxLimits | None = None, isolation: Isolation = "auto", python: str = sys.executable
    ) -> None:
        self.limits = limits or SandboxLimits()
        self.python = python
        self.isolation = detect_isolation(python) if isolation == "auto" else isolation
        self._unshare_user = self.isolation == "unshare" and not _probe(
            ["unshare", "-n", "--", python, "-I", "-S", "-c", "pass"]
        )

    def _command(self, workdir: str) -> list[str]:
        py = [self.python, "-I", "-S", "-B", "-c", RUNNER]
        if self.isolation == "bwrap":
            return ["bwrap", *_bwrap_args(workdir), *py]
        if self.isolation == "unshare":
            return ["unshare", *(["-r"] if self._unshare_user else []), "-n", "--", *py]
        return py

    def run(self, source: str, tests: Sequence[str]) -> list[float]:
        """One 0.0/1.0 per test: 1.0 when the test expression is true; failed, refused, timed out or not
        reached: 0.0."""
        lim = self.limits
        tag = secrets.token_hex(16)  # a solution cannot print result lines it does not know the tag of
        payload = {
            "tag": tag,
            "source": source,
            "tests": list(tests),
            "per_test": lim.per_test_seconds,
            "cpu": lim.cpu_seconds,
            "mem": lim.memory_mb << 20,
            "fsize": lim.file_mb << 20,
            "nproc": lim.nproc,
            "nofile": lim.open_files,
        }
        results = [0.0] * len(tests)
        with tempfile.TemporaryDirectory(prefix="swarmrl-sandbox-") as workdir:
            env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"}
            try:
                proc = subprocess.Popen(
                    self._command(workdir),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    cwd=workdir,
                    env=env,
                    start_new_session=True,
                )
            except OSError:
                return results
            try:
                stdout, _ = proc.communicate(json.dumps(payload).encode() + b"\n", timeout=lim.wall_seconds)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                stdout, _ = proc.communicate()
            finally:
                _kill_group(proc)  # anything it left behind in its session
        for line in stdout.decode(errors="replace").splitlines()[: len(tests)]:
            parts = line.split()
            if len(parts) == 3 and parts[0] == tag and parts[1].isdigit() and int(parts[1]) < len(tests):
                results[int(parts[1])] = 1.0 if parts[2] == "1" else 0.0
        return results


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, 9)
    if proc.poll() is None:
        proc.kill()
