"""Container health probe: exit 0 when the node's /healthz answers 200, else 1.

Standard library only, so the runtime image needs no curl. The URL comes from SWARMRL_HEALTHCHECK_URL, or is
built from SWARMRL_NODE__METRICS_PORT (the same variable the node reads its metrics port from; 9400 by
default). An unhealthy answer (503) or no answer at all both fail the check.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping

DEFAULT_PORT = 9400


def healthz_url(env: Mapping[str, str]) -> str:
    """Where to probe: an explicit URL wins, else loopback on the configured metrics port."""
    explicit = env.get("SWARMRL_HEALTHCHECK_URL", "").strip()
    if explicit:
        return explicit
    port = env.get("SWARMRL_NODE__METRICS_PORT", "").strip() or str(DEFAULT_PORT)
    return f"http://127.0.0.1:{port}/healthz"


def probe(url: str, timeout: float = 4.0) -> tuple[bool, str]:
    """(healthy, one-line reason)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        return False, f"{url} answered {exc.code}"
    except (OSError, ValueError) as exc:
        return False, f"{url} unreachable: {exc}"
    return status == 200, f"{url} answered {status}"


def main() -> int:
    healthy, reason = probe(healthz_url(os.environ))
    print(reason)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
