"""Keep the transports' connection caps well below the process's file-descriptor limit.

Every TCP connection holds a descriptor. If peers could open as many as ``RLIMIT_NOFILE`` allows, the node
itself could no longer open files: a checkpoint write would fail with "Too many open files". So at start a
transport asks ``connection_budget`` for its cap: the soft limit is raised towards the hard limit when the
cap needs it, and if the limit still does not leave room the cap is lowered (with a warning naming the
config field), to at most half the soft limit and ``FD_RESERVE`` below it.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger(__name__)

#: Descriptors kept free of peer connections: model and checkpoint files, the metrics and control
#: servers, pipes to the generation child, libraries.
FD_RESERVE = 256
#: A transport always gets at least this many connections.
MIN_CONNECTIONS = 8


def connection_budget(wanted: int, field: str) -> int:
    """The connection cap to use for a configured ``wanted`` (``field`` names it in the warning)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * wanted if wanted > FD_RESERVE else wanted + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(hard, need)
        if target > soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
            except (ValueError, OSError):
                pass
    if soft == resource.RLIM_INFINITY:
        return wanted
    room = max(MIN_CONNECTIONS, min(soft // 2, soft - FD_RESERVE))
    if wanted > room:
        log.warning(
            "%s=%d does not fit the open-file limit (ulimit -n %d, %d kept for the node itself); "
            "using %d connections",
            field,
            wanted,
            soft,
            FD_RESERVE,
            room,
        )
        return room
    return wanted
