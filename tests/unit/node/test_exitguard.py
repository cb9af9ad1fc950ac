"""``exit_now``/``ExitDeadline``: a process whose run is over exits at once with its code, runs its exit hooks,
and exits within the grace even when a thread never ends."""

from __future__ import annotations

import subprocess
import sys
import time

from tests.nodeutil import REPO

SCRIPT = """
import atexit, logging, threading, time
from swarmrl.node.exitguard import ExitDeadline, exit_now
logging.basicConfig(level=logging.INFO)
atexit.register(lambda: print("exit hook ran", flush=True))
if {stuck}:
    threading.Thread(target=lambda: time.sleep(3600), name="stuck-peer-thread").start()  # not a daemon
print("run over", flush=True)
if {guarded}:
    exit_now(3, ExitDeadline(grace_s=1.0))
"""


def run(stuck: bool, guarded: bool, timeout: float) -> subprocess.CompletedProcess[str]:
    code = SCRIPT.format(stuck=stuck, guarded=guarded)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=timeout
    )


def test_exit_now_runs_the_exit_hooks_and_exits_with_the_code() -> None:
    done = run(stuck=False, guarded=True, timeout=60)
    assert done.returncode == 3
    assert "exit hook ran" in done.stdout


def test_a_stuck_thread_cannot_keep_a_stopped_node_alive() -> None:
    t0 = time.monotonic()
    done = run(stuck=True, guarded=True, timeout=60)
    assert done.returncode == 3  # the run's own exit code
    assert time.monotonic() - t0 < 30
    assert "stuck-peer-thread" in done.stderr and "exiting now" in done.stderr
    assert "<lambda>" in done.stderr  # the stacks, for a post-mortem


def test_without_the_guard_the_same_process_hangs() -> None:
    """The control: the same script, unguarded, is still running after the guarded one's bound."""
    try:
        run(stuck=True, guarded=False, timeout=8)
    except subprocess.TimeoutExpired:
        return
    raise AssertionError("the unguarded process exited by itself: the test above proves nothing")
