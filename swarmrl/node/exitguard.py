"""A bounded process exit: once a node's run is over, the process is gone within ``EXIT_GRACE_S``.

After ``Node.run`` returns (round finished, checkpoint written, journals and transports closed) the process
still had to get through ``asyncio.run``'s teardown, the joins of non-daemon threads, the exit hooks and
then the interpreter's own teardown, none of them bounded. The last one is what made a victim node miss its
60 s exit under heavy load: measured with gdb on a node at load 35, it spent 12 s after the last exit hook
in ``Py_FinalizeEx`` -> ``finalize_modules`` -> full garbage collections over the heap of torch,
transformers and gRPC objects (slow in proportion to the heap and to the CPU the process gets), and no
thread can interrupt that phase.

``exit_now`` ends a node process deliberately instead: it arms an ``ExitDeadline``, joins non-daemon threads,
runs the exit hooks, flushes the logs and calls ``os._exit`` (skipping only the interpreter's teardown;
everything it would free goes with the process). If a thread or hook is stuck, the deadline logs which
threads are alive, dumps their stacks to stderr and exits with the run's exit code.
"""

from __future__ import annotations

import atexit
import contextlib
import faulthandler
import logging
import os
import sys
import threading
from typing import NoReturn

log = logging.getLogger(__name__)

#: Seconds from the end of a node's run (everything checkpointed and closed) to a forced exit.
EXIT_GRACE_S = 20.0


class ExitDeadline:
    """Arm once the run is over (``arm(code)``); fires only if the process has not exited by then."""

    def __init__(self, grace_s: float = EXIT_GRACE_S) -> None:
        self.grace_s = grace_s
        self._timer: threading.Timer | None = None

    def arm(self, code: int) -> None:
        if self._timer is not None:
            return
        timer = threading.Timer(self.grace_s, self._fire, args=(code,))
        timer.daemon = True
        timer.name = "swarmrl-exit-deadline"
        timer.start()
        self._timer = timer

    def _fire(self, code: int) -> None:
        alive = [t.name for t in threading.enumerate() if t is not threading.current_thread()]
        log.warning(
            "the process had not exited %.0fs after the node stopped (threads alive: %s); exiting now",
            self.grace_s,
            ", ".join(alive) or "-",
        )
        with contextlib.suppress(OSError, ValueError, RuntimeError):
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
            sys.stderr.flush()
        for handler in logging.getLogger().handlers:
            with contextlib.suppress(Exception):  # a handler that cannot flush must not keep us alive
                handler.flush()
        os._exit(code)


def exit_now(code: int, deadline: ExitDeadline | None = None) -> NoReturn:
    """End the process with ``code`` after a node's run: threads joined and exit hooks run (both within the
    deadline), logs flushed, then ``os._exit`` (no interpreter teardown)."""
    deadline = deadline or ExitDeadline()
    deadline.arm(code)
    me = threading.current_thread()
    for thread in threading.enumerate():
        if thread is not me and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
