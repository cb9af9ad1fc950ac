"""Task columns: a dataset file's extra fields become immutable ``Task.columns``, part of the TaskRef digest
only when mapped, and reach every sample's extras (own and external groups) from the local regeneration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swarmrl.errors import TaskConfigError
from swarmrl.node.rollouts import to_samples
from swarmrl.protocol.types import Completion, PolicyInfo, RolloutGroup
from swarmrl.tasks import build_source

ROWS = [
    {"question": "1+1=", "answer": "2", "refs": [0.1, 0.5], "tests": ["a", "b"]},
    {"question": "2+2=", "answer": "4", "refs": [0.2, 0.4], "tests": ["c"]},
]


def _file(tmp_path: Path) -> Path:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def test_dataset_fields_become_task_columns(tmp_path: Path) -> None:
    path = _file(tmp_path)
    plain = build_source("dataset", "rows", {"path": str(path)}, 0, 1)
    src = build_source(
        "dataset", "rows", {"path": str(path), "columns": {"ref_rewards": "refs", "tests": "tests"}}, 0, 1
    )
    assert plain.columns == frozenset() and src.columns == {"ref_rewards", "tests"}
    task = src.get(1)
    assert dict(task.columns) == {"ref_rewards": [0.2, 0.4], "tests": ["c"]}
    with pytest.raises(TypeError):
        task.columns["tests"] = []  # type: ignore[index]
    assert plain.get(1).columns == {}
    assert plain.digest != src.digest  # what is read from the file is part of the identity
    again = build_source("dataset", "rows", {"path": str(path)}, 0, 1)
    assert again.digest == plain.digest


def test_a_column_no_row_has_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(TaskConfigError) as err:
        build_source("dataset", "rows", {"path": str(_file(tmp_path)), "columns": {"x": "nope"}}, 0, 1)
    assert err.value.field == "config.columns.x"


def test_to_samples_copies_columns_for_own_and_external_groups(tmp_path: Path) -> None:
    src = build_source(
        "dataset", "rows", {"path": str(_file(tmp_path)), "columns": {"ref_rewards": "refs"}}, 0, 1
    )
    task = src.get(0)
    for origin in ("local", "external"):
        group = RolloutGroup(
            task.ref,
            task.question,
            task.answer,
            [Completion("2", [5]), Completion("3", [6])],
            PolicyInfo("m", 1, "n"),
            origin=origin,
        )
        samples = to_samples(group, task)
        assert [s.extras["ref_rewards"] for s in samples] == [[0.1, 0.5], [0.1, 0.5]]
        samples[0].extras["ref_rewards"].append(9.0)  # one sample's copy is its own
        assert samples[1].extras["ref_rewards"] == [0.1, 0.5] and task.columns["ref_rewards"] == [0.1, 0.5]
    unknown = to_samples(group, None)  # a task we could not regenerate: nothing from the peer
    assert all("ref_rewards" not in s.extras for s in unknown)
