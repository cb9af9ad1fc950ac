"""The repository is self-contained: no file points outside it, and every "docs/rewards.md section N" /
"docs/design.md section N" reference names a section heading that exists.

Numbered headings in those docs have one style: ``## 7. Title`` (``### 17.3. Title`` for sub-sections).
Checked: swarmrl/, tests/, deploy/, benchmarks/, examples/, docs/ (except docs/history/, a record of
the past) and the top-level files. The needles are assembled at run time, so this file does not match
itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DIRS = ("swarmrl", "tests", "deploy", "benchmarks", "examples", "docs")
TOP_FILES = ("README.md", "Makefile", "pyproject.toml", "docker-compose.yml")
TEXT_SUFFIXES = frozenset(
    {".py", ".pyi", ".md", ".yml", ".yaml", ".toml", ".txt", ".proto", ".json", ".sh", ".cfg", ".ini", ""}
)
MAX_BYTES = 2_000_000

#: Names of the briefs that live outside the repository (assembled so that this file does not match).
FORBIDDEN = ("..", "/shared")
FORBIDDEN_NAMES = ("REWARDS" + "_SPEC", "DESIGN" + ".md")

DOCS = {"rewards": "docs/rewards.md", "design": "docs/design.md"}
HEADING = re.compile(r"^#{2,4} (\d+(?:\.\d+)*)\. \S", re.MULTILINE)
#: A numbered heading without the dot after its number (the other style, not used).
OTHER_STYLE = re.compile(r"^#{2,4} \d+(?:\.\d+)*(?: |$)", re.MULTILINE)
NUM = r"\d+(?:\.\d+)*"
REF = re.compile(rf"docs/(rewards|design)\.md`?\)?,?\s+sections?\s+({NUM}(?:\s*(?:-|–|,|/|and)\s*{NUM})*)")
SAPO_REF = re.compile(r"docs/rewards\.md`?\s+SAPO requirement\s+(\d+)")


def files(root: Path) -> Iterator[Path]:
    """Text files of the repository that must not point outside it."""
    for name in TOP_FILES:
        if (root / name).is_file():
            yield root / name
    for top in DIRS:
        base = root / top
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            rel = path.relative_to(root).parts
            if not path.is_file() or rel[:2] == ("docs", "history") or "__pycache__" in rel:
                continue
            if path.suffix not in TEXT_SUFFIXES:
                continue
            if path.stat().st_size <= MAX_BYTES:
                yield path


def _text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None


def outside_refs(root: Path) -> list[str]:
    """'file:line: needle' for every reference to the briefs outside the repository."""
    needles = ["".join(FORBIDDEN), *FORBIDDEN_NAMES]
    found = []
    for path in files(root):
        text = _text(path)
        if text is None:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            for needle in needles:
                if needle in line:
                    found.append(f"{path.relative_to(root)}:{n}: {needle}")
    return found


def section_numbers(text: str) -> set[str]:
    return set(HEADING.findall(text))


def expand(spec: str) -> list[str]:
    """'1-3, 9, 0.1/18 and 17.3' -> ['1', '2', '3', '9', '0.1', '18', '17.3']."""
    out: list[str] = []
    for part in re.split(r"\s*(?:,|/|and)\s*", spec.strip()):
        if not part:
            continue
        m = re.fullmatch(r"(\d+)\s*[-–]\s*(\d+)", part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            out += [str(k) for k in range(lo, hi + 1)]
        else:
            out += [x for x in re.split(r"\s*[-–]\s*", part) if x]
    return out


def sapo_requirements(text: str) -> set[str]:
    """Numbers of the items listed under the 'SAPO requirements' heading of docs/rewards.md."""
    m = re.search(r"^#{2,4} [\d.]+ SAPO requirements\n(.*?)(?=^#{2,4} )", text, re.MULTILINE | re.DOTALL)
    return set(re.findall(r"^(\d+)\. ", m.group(1), re.MULTILINE)) if m else set()


def dangling_refs(root: Path) -> list[str]:
    """'file:line: doc section N' for every section reference whose heading does not exist."""
    docs = {k: _text(root / v) or "" for k, v in DOCS.items()}
    have = {k: section_numbers(v) for k, v in docs.items()}
    sapo = sapo_requirements(docs["rewards"])
    found = []
    for path in files(root):
        text = _text(path)
        if text is None:
            continue
        for m in REF.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            for number in expand(m.group(2)):
                if number not in have[m.group(1)]:
                    found.append(f"{path.relative_to(root)}:{line}: {DOCS[m.group(1)]} section {number}")
        for m in SAPO_REF.finditer(text):
            if m.group(1) not in sapo:
                line = text.count("\n", 0, m.start()) + 1
                found.append(f"{path.relative_to(root)}:{line}: SAPO requirement {m.group(1)}")
    return found


def test_no_file_points_outside_the_repository() -> None:
    assert outside_refs(ROOT) == []


def test_every_cited_section_exists() -> None:
    assert (ROOT / DOCS["rewards"]).is_file() and (ROOT / DOCS["design"]).is_file()
    assert dangling_refs(ROOT) == []


@pytest.mark.parametrize("doc", sorted(DOCS.values()))
def test_numbered_headings_use_one_style(doc: str) -> None:
    text = (ROOT / doc).read_text(encoding="utf-8")
    assert section_numbers(text), f"{doc} has no numbered headings"
    assert OTHER_STYLE.findall(text) == [], f"{doc}: number headings as '## 7. Title'"


def test_the_checks_find_what_they_look_for(tmp_path: Path) -> None:
    """A small repository with one of each problem: every one is reported, the good references are not.
    (``d`` keeps the references below from being references of this file.)"""
    d = "docs/"
    (tmp_path / "docs" / "history").mkdir(parents=True)
    (tmp_path / "swarmrl").mkdir()
    (tmp_path / "docs" / "rewards.md").write_text(
        "# R\n## 0. Base\n### 0.5. SAPO requirements\n1. one\n2. two\n## 1. One\n## 3. Three\n"
    )
    (tmp_path / "docs" / "design.md").write_text("# D\n## 7. Metrics\n")
    (tmp_path / "docs" / "history" / "old.md").write_text("see " + "".join(FORBIDDEN) + "/x\n")
    (tmp_path / "README.md").write_text(f"see {FORBIDDEN_NAMES[1]} and {d}design.md section 7\n")
    (tmp_path / "swarmrl" / "a.py").write_text(
        f'"""{d}rewards.md sections 1-3, {d}design.md section 8, {d}rewards.md SAPO requirement 3;\n'
        f'{FORBIDDEN_NAMES[0]}.md section 1; {d}rewards.md section 0.5 and {d}rewards.md SAPO requirement 2"""\n'
    )
    out = outside_refs(tmp_path)
    assert out == [f"README.md:1: {FORBIDDEN_NAMES[1]}", f"swarmrl/a.py:2: {FORBIDDEN_NAMES[0]}"]
    dangling = dangling_refs(tmp_path)
    assert dangling == [
        f"swarmrl/a.py:1: {d}rewards.md section 2",
        f"swarmrl/a.py:1: {d}design.md section 8",
        "swarmrl/a.py:1: SAPO requirement 3",
    ]
    assert expand("1-3, 9, 0.1/18 and 17.3") == ["1", "2", "3", "9", "0.1", "18", "17.3"]
