"""The house rules of imports, checked on every module of the package (top-level and function-level imports
alike), plus a fresh interpreter that loads every swarm module and the gossip-only app without torch.

Rules (one-way arrows; see docs/design.md):
- ``protocol`` imports no other swarmrl package;
- ``rewards`` never imports ``trainer``, ``swarm``, ``node`` or ``apps``;
- ``swarm`` never imports ``trainer``, ``rewards`` or torch;
- ``trainer`` never imports ``swarm``, ``node`` or ``apps``;
- nothing imports ``apps`` or ``cli`` except ``cli`` (and ``apps`` itself).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import swarmrl

PACKAGE = Path(swarmrl.__file__).parent

#: package -> packages (or top-level modules) it must never import
FORBIDDEN: dict[str, frozenset[str]] = {
    "protocol": frozenset({"apps", "cli", "config", "node", "rewards", "swarm", "tasks", "trainer"}),
    "rewards": frozenset({"trainer", "swarm", "node", "apps", "cli"}),
    "swarm": frozenset({"trainer", "rewards", "node", "apps", "cli", "torch"}),
    "trainer": frozenset({"swarm", "node", "apps", "cli"}),
    "tasks": frozenset({"trainer", "swarm", "node", "apps", "cli", "rewards"}),
    "config": frozenset({"node", "apps", "cli"}),
    "node": frozenset({"apps", "cli"}),
}
#: modules of ``protocol`` may use these shared leaves of the package
PROTOCOL_ALLOWED = frozenset({"errors", "protocol"})


def _target(module: str, node: ast.ImportFrom | ast.Import, alias: ast.alias) -> str:
    """The absolute dotted name an import statement in ``module`` refers to."""
    if isinstance(node, ast.Import):
        return alias.name
    base = node.module or ""
    if node.level:
        parts = module.split(".")[: -node.level]
        base = ".".join([*parts, base]) if base else ".".join(parts)
    return base


def imports_of(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, imported dotted name) for every import statement in a source file, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                out.append((node.lineno, _target(module, node, alias)))
    return out


def violations(root: Path, top: str = "swarmrl") -> list[str]:
    """Every forbidden arrow under the package at ``root``, as 'file:line: a -> b' lines."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        if not parts:
            continue
        module = ".".join([top, *parts])
        here = parts[0]
        for line, name in imports_of(path, module):
            head = name.split(".")
            if head[0] == "torch":
                target = "torch"
            elif head[0] == top and len(head) > 1:
                target = head[1]
            else:
                continue
            bad = False
            if here == "protocol":
                bad = target != "torch" and target not in PROTOCOL_ALLOWED
            elif target in FORBIDDEN.get(here, frozenset()):
                bad = True
            if target in ("apps", "cli") and here not in ("cli", "apps"):
                bad = True
            if bad:
                found.append(f"{path.relative_to(root.parent)}:{line}: {here} -> {target} ({name})")
    return found


def test_no_forbidden_import_in_the_package() -> None:
    assert violations(PACKAGE) == []


def test_the_checker_finds_each_kind_of_forbidden_arrow(tmp_path: Path) -> None:
    """A copy of the rules' targets with one forbidden import per rule: each is reported."""
    pkg = tmp_path / "swarmrl"
    files = {
        "protocol/types.py": "from swarmrl.tasks import Task\n",
        "rewards/base.py": "def f():\n    from swarmrl.trainer.policy import Policy\n",
        "swarm/pool.py": "import torch\n",
        "trainer/learner.py": "from swarmrl.node import journal\n",
        "node/node.py": "from ..apps import experiment\n",
        "tasks/base.py": "from swarmrl.swarm.receive import REGENERATED_TASK\n",
        "swarm/ok.py": "from swarmrl.protocol import envelope\nfrom swarmrl.errors import TaskError\n",
    }
    for rel, text in files.items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    found = violations(pkg)
    assert len(found) == 6, found
    for rel in files:
        if rel != "swarm/ok.py":
            assert any(rel.split("/")[0] in line and Path(rel).name in line for line in found), rel


def test_swarm_and_the_gossip_app_load_without_torch_trainer_or_rewards() -> None:
    """Every module of ``swarm`` (transports included) and the gossip-only app, in a fresh interpreter."""
    modules = sorted(
        ".".join(["swarmrl", *p.relative_to(PACKAGE).with_suffix("").parts]).removesuffix(".__init__")
        for p in (PACKAGE / "swarm").rglob("*.py")
    )
    code = (
        "import importlib, json, sys\n"
        f"for m in {[*modules, 'swarmrl.apps.gossip_node']!r}:\n"
        "    importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'swarmrl.trainer', "
        "'swarmrl.rewards', 'swarmrl.node', 'transformers')))\n"
        "print(json.dumps(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_each_package_has_a_docstring_map(package: str) -> None:
    doc = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text()))
    assert doc and len(doc.splitlines()) >= 3, f"swarmrl/{package}/__init__.py needs a docstring that maps it"
