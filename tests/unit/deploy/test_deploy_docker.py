"""deploy/Dockerfile and its helper scripts, checked without a Docker engine.

The Dockerfile is parsed into instructions and checked for the properties operators rely on (non-root,
/data volume, health check, deps layer before code); the two scripts the image runs are executed for real:
the health probe against a live metrics server, the requirements extractor against pyproject.toml.
"""

from __future__ import annotations

import fnmatch
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from conftest import DEPLOY, REPO
from packaging.requirements import Requirement

from swarmrl.node.metrics import MetricsServer, NodeMetrics

DOCKERFILE = DEPLOY / "Dockerfile"
Instruction = tuple[str, str]


def _instructions(text: str) -> list[Instruction]:
    """(KEYWORD, arguments) per instruction, with line continuations joined and comments dropped."""
    out: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def _stages() -> dict[str, list[Instruction]]:
    stages: dict[str, list[Instruction]] = {}
    current: list[Instruction] = []
    for keyword, args in _instructions(DOCKERFILE.read_text(encoding="utf-8")):
        if keyword == "FROM":
            name = args.split()[-1] if " AS " in args.upper() else str(len(stages))
            current = stages.setdefault(name, [])
        current.append((keyword, args))
    return stages


def _index(stage: list[Instruction], keyword: str, needle: str) -> int:
    for i, (kw, args) in enumerate(stage):
        if kw == keyword and needle in args:
            return i
    raise AssertionError(f"no {keyword} containing {needle!r}")


def test_multi_stage_on_python_311_slim() -> None:
    stages = _stages()
    assert list(stages) == ["builder", "runtime"]
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    for stage in stages.values():
        assert stage[0] == ("FROM", f"${{PYTHON_IMAGE}} AS {stage[0][1].split()[-1]}")


def test_builder_has_the_fastecdsa_toolchain_and_runtime_does_not() -> None:
    stages = _stages()
    builder = " ".join(args for kw, args in stages["builder"] if kw == "RUN")
    runtime = " ".join(args for kw, args in stages["runtime"] if kw == "RUN")
    assert "build-essential" in builder and "libgmp-dev" in builder
    assert "build-essential" not in runtime and "libgmp-dev" not in runtime
    assert "libgmp10" in runtime, "fastecdsa links GMP at run time"


def test_torch_pin_matches_the_project() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "ARG TORCH_VERSION=2.13.0" in text
    assert "download.pytorch.org/whl/cpu" in text
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    torch_req = next(Requirement(d) for d in project["dependencies"] if Requirement(d).name == "torch")
    assert torch_req.specifier.contains("2.13.0"), f"the image's torch is outside pyproject's {torch_req}"
    assert "gpu" in project["optional-dependencies"], "the CUDA variant installs the gpu extra"
    assert "--extra gpu" in text


def test_dependency_layer_comes_before_the_source() -> None:
    builder = _stages()["builder"]
    deps = _index(builder, "RUN", "pip install -r")
    code = _index(builder, "COPY", "swarmrl /src/swarmrl")
    pyproject = _index(builder, "COPY", "pyproject.toml /build/")
    assert pyproject < deps < code
    assert _index(builder, "RUN", "torch==") < deps, "torch (largest, rarest change) goes first"


def test_runtime_is_non_root_with_data_volume_healthcheck_and_entrypoint() -> None:
    runtime = _stages()["runtime"]
    users = [args for kw, args in runtime if kw == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert ("VOLUME", '["/data"]') in runtime
    assert ("ENTRYPOINT", '["swarm-node"]') in runtime
    health = [args for kw, args in runtime if kw == "HEALTHCHECK"]
    assert len(health) == 1 and "/usr/local/lib/swarmrl/healthcheck.py" in health[0]
    assert _index(runtime, "COPY", "healthcheck.py /usr/local/lib/swarmrl/healthcheck.py") < _index(
        runtime, "HEALTHCHECK", "healthcheck"
    )
    env = " ".join(args for kw, args in runtime if kw == "ENV")
    assert "SWARMRL_NODE__METRICS_HOST=0.0.0.0" in env, "containers must serve /metrics on all interfaces"


def _copy_sources() -> list[str]:
    sources: list[str] = []
    for stage in _stages().values():
        for kw, args in stage:
            if kw == "COPY" and "--from=" not in args:
                sources.extend(args.split()[:-1])
    return sources


def test_copied_files_exist_and_survive_the_dockerignore() -> None:
    readme = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"].get("readme")
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    keep = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    for source in _copy_sources():
        # pyproject.toml declares the readme, so the build needs it; the lead writes README.md.
        if source != readme:
            assert (REPO / source).exists(), f"COPY source {source} does not exist"
        assert any(source == k or fnmatch.fnmatch(source, k) or source.startswith(k + "/") for k in keep), (
            f"{source} is excluded by deploy/Dockerfile.dockerignore"
        )


# -- deploy/docker/pyproject_deps.py ---------------------------------------------------------------------


def _deps(*args: str) -> list[str]:
    script = DEPLOY / "docker" / "pyproject_deps.py"
    result = subprocess.run(
        [sys.executable, str(script), str(REPO / "pyproject.toml"), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout.splitlines()


def test_requirements_are_the_project_dependencies_without_torch() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = list(project["dependencies"])
    assert _deps() == [d for d in declared if not d.lower().startswith("torch")]
    assert _deps("--keep-torch") == declared
    gpu = _deps("--extra", "gpu", "--keep-torch")
    assert gpu == declared + [d for d in project["optional-dependencies"]["gpu"] if d not in declared]


def test_requirements_script_rejects_an_unknown_extra() -> None:
    with pytest.raises(subprocess.CalledProcessError):
        _deps("--extra", "no-such-extra")


# -- deploy/docker/healthcheck.py ------------------------------------------------------------------------


@contextmanager
def _metrics_server(healthy: bool) -> Iterator[int]:
    server = MetricsServer(NodeMetrics(), "127.0.0.1", 0, lambda: healthy)
    server.start()
    try:
        yield server.port
    finally:
        server.close()


def _probe(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SWARMRL_")}
    return subprocess.run(
        [sys.executable, str(DEPLOY / "docker" / "healthcheck.py")],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_healthcheck_passes_on_a_healthy_node() -> None:
    with _metrics_server(True) as port:
        result = _probe({"SWARMRL_NODE__METRICS_PORT": str(port)})
    assert result.returncode == 0, result.stdout + result.stderr


def test_healthcheck_fails_on_an_unhealthy_node() -> None:
    with _metrics_server(False) as port:
        result = _probe({"SWARMRL_HEALTHCHECK_URL": f"http://127.0.0.1:{port}/healthz"})
    assert result.returncode == 1
    assert "503" in result.stdout


def test_healthcheck_fails_when_nothing_listens() -> None:
    with _metrics_server(True) as port:
        pass  # closed again: the port is now free
    result = _probe({"SWARMRL_NODE__METRICS_PORT": str(port)})
    assert result.returncode == 1
    assert "unreachable" in result.stdout
