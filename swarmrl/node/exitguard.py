"""A bounded process exit: once a node's run is over, the process is gone within ``EXIT_GRACE_S``.

After ``Node.run`` returns, ``asyncio.run`` still cancels and awaits leftover tasks and joins the default
executor's threads, and the interpreter joins every non-daemon thread and runs exit hooks (gRPC's among
them); none of that has a timeout. A node asked to stop (SIGTERM from systemd, docker or a test) must not
sit there for ever because a thread or a library's shutdown is stuck on something a peer left behind.
``ExitDeadline.arm`` starts a daemon timer when the run is over: if the process is still alive when it
fires, it logs which threads are alive, dumps their stacks to stderr and exits with the run's exit code.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import sys
import threading

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
