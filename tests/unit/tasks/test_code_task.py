"""The ``code`` task source and its sandbox: hostile solutions are stopped or refused and fail their tests,
good ones pass, results arrive per test, and the task carries its tests as columns."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from swarmrl.errors import TaskConfigError
from swarmrl.tasks import build_source
from swarmrl.tasks.code import CodeSource
from swarmrl.tasks.sandbox import Sandbox, SandboxLimits

PREFIX = "def f(x):\n    return "
TESTS = ["f(1) == 2", "f(5) == 6", "f(-2) == -1"]
LIMITS = SandboxLimits(cpu_seconds=2, wall_seconds=4.0, per_test_seconds=0.5, memory_mb=256)


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(LIMITS)


def test_a_right_solution_passes_and_a_near_miss_passes_some(sandbox: Sandbox) -> None:
    assert sandbox.run(PREFIX + "x+1", TESTS) == [1.0, 1.0, 1.0]
    assert sandbox.run(PREFIX + "abs(x)+1", TESTS) == [1.0, 1.0, 0.0]
    assert sandbox.run(PREFIX + "x +", TESTS) == [0.0, 0.0, 0.0]  # does not compile


def test_hostile_solutions_are_stopped_or_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    outside = tmp_path / "escaped.txt"
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    pid_file = tmp_path / "forked"
    hostile = {
        "loops forever": "[0 for _ in iter(int, 1)]",
        "allocates 10 GB": "len(bytearray(10 * 1024**3)) and x+1",
        "forks": f"(__import__('os').fork() or open({str(pid_file)!r}, 'w')) and x+1",
        "starts a process": "__import__('subprocess').run(['true']).returncode + x + 1",
        "writes outside its directory": f"open({str(outside)!r}, 'w').write('x') and x+1",
        "opens a socket": f"__import__('socket').create_connection(('127.0.0.1', {port}), 1) and x+1",
        "forges result lines": "print('R 0 1\\nR 1 1') or x+1 if False else print('R 0 1')",
        "exits early": "__import__('os')._exit(0)",
    }
    try:
        for what, body in hostile.items():
            t0 = time.monotonic()
            result = sandbox.run(PREFIX + body, TESTS)
            assert result == [0.0, 0.0, 0.0], what
            assert time.monotonic() - t0 < LIMITS.wall_seconds + 2, what
        server.settimeout(0.2)
        with pytest.raises(TimeoutError):
            server.accept()  # nothing connected
    finally:
        server.close()
    assert not outside.exists() and not pid_file.exists()


def test_writing_inside_the_working_directory_is_allowed(sandbox: Sandbox) -> None:
    body = "open('scratch.txt', 'w').write('ok') and int(open('scratch.txt').read() == 'ok') * x + 1"
    assert sandbox.run(PREFIX + body, TESTS) == [1.0, 1.0, 1.0]


def test_tests_before_a_timeout_keep_their_results(sandbox: Sandbox) -> None:
    body = "x+1 if x != 5 else [0 for _ in iter(int, 1)]"
    assert sandbox.run(PREFIX + body, TESTS) == [1.0, 0.0, 1.0]


def test_isolation_is_the_best_available() -> None:
    sb = Sandbox(LIMITS)
    assert sb.isolation in ("bwrap", "unshare", "none")
    if os.geteuid() == 0:  # root can always enter a network namespace
        assert sb.isolation in ("bwrap", "unshare")
    assert Sandbox(LIMITS, isolation="none").run(PREFIX + "x+1", TESTS) == [1.0, 1.0, 1.0]


def test_code_source_carries_tests_and_fills_the_pass_matrix() -> None:
    src = build_source("code", "tiny", {"per_test_seconds": 0.5}, 0, 10)
    assert isinstance(src, CodeSource)
    assert src.size > 100 and src.columns == {"tests", "code_prefix"}
    assert src.completion_columns == {"test_results"}
    task = src.get(3)
    assert task.columns["tests"] and task.columns["code_prefix"].startswith("def ")
    with pytest.raises(TypeError):
        task.columns["tests"] = []  # type: ignore[index]
    extras = src.completion_extras(task, [task.answer, "", task.answer])
    n = len(task.columns["tests"])
    assert extras[0] == {"test_results": [1.0] * n} == extras[2]
    assert extras[1] == {"test_results": [0.0] * n}
    assert task.score(task.answer) == 1.0 and task.score("") == 0.0
    # the limits are not part of the task identity: nodes with other limits share tasks
    other = build_source("code", "tiny", {"wall_seconds": 9, "results_key": "passes"}, 0, 10)
    assert other.ref(3) == src.ref(3) and other.completion_columns == {"passes"}


def test_code_source_config_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(TaskConfigError) as err:
        build_source("code", "tiny", {"wall_seconds": -1}, 0, 10)
    assert err.value.field == "config.wall_seconds"
    with pytest.raises(TaskConfigError) as err:
        build_source("code", "mine", {}, 0, 10)
    assert err.value.field == "config.path"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "prefix": "", "solution": "1"}\n')
    with pytest.raises(TaskConfigError, match="tests"):
        build_source("code", "mine", {"path": str(bad)}, 0, 10)
