"""The ``dataset`` task source: the user's JSONL/CSV/Parquet file or saved dataset, answer extraction, TaskRefs
that only a holder of the same file can regenerate, held-out rows, and the shipped example dataset."""

from __future__ import annotations

import csv
import json
import random
import sys
from pathlib import Path
from typing import Any

import pytest

from swarmrl.errors import DatasetUnavailableError, TaskConfigError, TaskError
from swarmrl.tasks import TaskSampler, build_source, regenerate
from swarmrl.tasks.extract import gold_answer, matches
from swarmrl.tasks.word_problems import write_jsonl

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "data" / "word_problems.jsonl"
ROWS = [
    {"q": "Ann has 3 apples and gets 4 more.", "a": "3 + 4 = 7\n#### 7", "n": 7},
    {"q": "Ben has 1,200 coins and loses 200.", "a": "#### 1,000", "n": 1000},
    {"q": "Half of 5?", "a": "The answer is \\boxed{\\frac{5}{2}}. #### 2.5", "n": 2.5},
]


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _source(path: Path, **config: Any) -> Any:
    return build_source("dataset", "mine", {"path": str(path), **config}, seed=5, size=10)


def test_example_dataset_is_what_the_generator_writes(tmp_path: Path) -> None:
    fresh = write_jsonl(tmp_path / "wp.jsonl")
    assert fresh.read_bytes() == EXAMPLE.read_bytes()
    src = build_source(
        "dataset",
        "word_problems",
        {"path": str(EXAMPLE), "answer_field": "solution", "extract": "gsm8k"},
        seed=0,
        size=1,
    )
    assert src.size == 1000
    task = src.get(0)
    assert task.question.startswith("Ben buys 2 bags") and task.answer == "18"
    assert task.score(" 18") == 1.0 and task.score("#### 18.0") == 1.0 and task.score("17") == 0.0


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet", "arrow"])
def test_every_format_reads_the_same_rows(tmp_path: Path, fmt: str) -> None:
    if fmt == "jsonl":
        path = _jsonl(tmp_path / "d.jsonl", ROWS)
    elif fmt == "csv":
        path = tmp_path / "d.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=["q", "a", "n"])
            writer.writeheader()
            writer.writerows(ROWS)
    elif fmt == "parquet":
        pa = pytest.importorskip("pyarrow")
        import pyarrow.parquet as pq

        path = tmp_path / "d.parquet"
        pq.write_table(pa.table({k: [r[k] for r in ROWS] for k in ("q", "a")}), path)
    else:
        datasets = pytest.importorskip("datasets")
        path = tmp_path / "saved"
        datasets.DatasetDict(
            {"train": datasets.Dataset.from_dict({k: [r[k] for r in ROWS] for k in ("q", "a")})}
        ).save_to_disk(str(path))
    src = _source(path, question_field="q", answer_field="a", extract="gsm8k")
    assert src.format == fmt and src.size == 3
    assert [src.get(i).answer for i in range(3)] == ["7", "1000", "2.5"]
    assert src.get(1).question == ROWS[1]["q"]
    assert src.get(4).ref.index == 1  # indices wrap like every source's
    assert src.ref(1).seed == 0  # rows do not depend on the tasks seed


def test_answer_extraction_modes() -> None:
    assert gold_answer(" 42 ", "exact") == "42"
    assert gold_answer("$1,000.50", "numeric") == "1000.5"
    assert gold_answer("7.0", "numeric") == "7"
    assert gold_answer("Add them: 3+4=7.\n#### 7", "gsm8k") == "7"
    assert gold_answer("so \\boxed{\\frac{1}{2}} done", "boxed") == "\\frac{1}{2}"
    with pytest.raises(TaskError, match="####"):
        gold_answer("7", "gsm8k")
    with pytest.raises(TaskError, match="not a number"):
        gold_answer("seven", "numeric")
    assert matches("42", "42", "exact") and not matches("42.0", "42", "exact")
    assert matches("so it is 7.00", "7", "numeric") and not matches("8", "7", "numeric")
    assert matches("3+4 = 7\n#### 7", "7", "gsm8k") and matches("the answer: 1,000", "1000", "gsm8k")
    assert matches("\\boxed{ \\frac{1}{2} }", "\\frac{1}{2}", "boxed")
    assert matches("\\boxed{0.5}", "1/2", "boxed") and not matches("\\boxed{}", "1/2", "boxed")


def test_same_file_elsewhere_regenerates_and_another_version_is_unavailable(tmp_path: Path) -> None:
    mine = _source(_jsonl(tmp_path / "a.jsonl", ROWS), question_field="q", answer_field="a")
    (tmp_path / "other").mkdir()
    theirs = _source(_jsonl(tmp_path / "other" / "copy.jsonl", ROWS), question_field="q", answer_field="a")
    ref = theirs.get(2).ref
    assert ref == mine.get(2).ref  # path is not part of the ref; contents are
    assert regenerate([mine], ref) == (mine.get(2).question, mine.get(2).answer)
    edited = [dict(r) for r in ROWS]
    edited[0]["a"] = "#### 8"
    changed = _source(_jsonl(tmp_path / "b.jsonl", edited), question_field="q", answer_field="a")
    assert changed.digest != mine.digest
    with pytest.raises(DatasetUnavailableError, match="another version"):
        regenerate([changed], ref)
    arithmetic = build_source("arithmetic", "add", {}, seed=5, size=100)
    with pytest.raises(DatasetUnavailableError, match="does not hold"):
        regenerate([arithmetic], ref)
    # What is read from the file is part of the digest too: another answer column, another task.
    other_field = _source(tmp_path / "a.jsonl", question_field="q", answer_field="n")
    assert other_field.digest != mine.digest


def test_held_out_rows_are_never_sampled(tmp_path: Path) -> None:
    rows = [{"question": f"q{i}", "answer": str(i)} for i in range(30)]
    src = _source(_jsonl(tmp_path / "d.jsonl", rows))
    sampler = TaskSampler([src], [1.0], random.Random(0), eval_questions=10)
    drawn = {t.ref.index for t in sampler.sample(600)}
    assert drawn == set(range(10, 30))
    assert [t.ref.index for t in sampler.eval_set()] == list(range(10))
    with pytest.raises(TaskError, match="held-out"):
        TaskSampler([src], [1.0], random.Random(0), eval_questions=30)


@pytest.mark.parametrize(
    ("config", "field", "words"),
    [
        ({}, "config.path", "required"),
        ({"path": "nope.jsonl"}, "config.path", "does not exist"),
        ({"path": "{tmp}/d.txt"}, "config.format", "suffix"),
        ({"path": "{tmp}/d.jsonl", "format": "xml"}, "config.format", "jsonl"),
        ({"path": "{tmp}/d.jsonl", "question_field": "missing"}, "config.question_field", "row 0"),
        ({"path": "{tmp}/d.jsonl", "answer_field": "missing"}, "config.answer_field", "row 0"),
        ({"path": "{tmp}/d.jsonl", "extract": "gsm8k"}, "config.extract", "####"),
        ({"path": "{tmp}/d.jsonl", "extract": "regex"}, "config.extract", "exact"),
        ({"path": "{tmp}/d.jsonl", "template": "no slot"}, "config.template", "{question}"),
        ({"path": "{tmp}/d.jsonl", "colour": "red"}, "config.colour", "Extra"),
        ({"path": "{tmp}/empty.jsonl"}, "config.path", "no rows"),
    ],
)
def test_bad_dataset_config_names_the_key(
    tmp_path: Path, config: dict[str, Any], field: str, words: str
) -> None:
    _jsonl(tmp_path / "d.jsonl", [{"question": "q", "answer": "a"}])
    (tmp_path / "d.txt").write_text("x")
    (tmp_path / "empty.jsonl").write_text("\n")
    config = {k: (v.replace("{tmp}", str(tmp_path)) if k == "path" else v) for k, v in config.items()}
    with pytest.raises(TaskConfigError) as err:
        build_source("dataset", "mine", config, seed=0, size=1)
    assert err.value.field == field and words in str(err.value), str(err.value)


def test_parquet_without_pyarrow_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "d.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(TaskError, match=r"needs pyarrow: pip install 'swarmrl\[data\]'"):
        build_source("dataset", "mine", {"path": str(tmp_path / "d.parquet")}, seed=0, size=1)
