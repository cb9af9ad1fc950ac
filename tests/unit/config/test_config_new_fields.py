"""`swarm-node config check` names the field of every bad value of the dataset source and the real-model knobs
(exit 2, one line). Runs the console entry point in-process (one real subprocess run is in test_config.py's
style at the end) to keep the many cases fast."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from swarmrl.cli import main
from tests.nodeutil import run_cli


def _dataset(tmp: Path, **config: Any) -> dict[str, Any]:
    return {"tasks": {"sources": [{"source": "dataset", "dataset": "mine", "config": config}]}}


def _check(tmp_path: Path, data: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(data))
    monkeypatch.setattr(sys, "argv", ["swarm-node", "config", "check", str(f)])
    try:
        main()
    except SystemExit as exited:
        return int(exited.code or 0), f.name
    return 0, f.name


CASES: list[tuple[str, Any, str]] = [
    # the dataset task source and plugins
    ("tasks.sources[0].source", {"tasks": {"sources": [{"source": "nope"}]}}, "unknown task source"),
    ("tasks.sources[0].config.path", {"path": "missing.jsonl"}, "does not exist"),
    ("tasks.sources[0].config.format", {"path": "{d}", "format": "xml"}, "jsonl"),
    ("tasks.sources[0].config.question_field", {"path": "{d}", "question_field": "q"}, "row 0"),
    ("tasks.sources[0].config.answer_field", {"path": "{d}", "answer_field": ""}, "at least 1"),
    ("tasks.sources[0].config.extract", {"path": "{d}", "extract": "regex"}, "gsm8k"),
    ("tasks.sources[0].config.extract", {"path": "{d}", "extract": "numeric"}, "not a number"),
    ("tasks.sources[0].config.template", {"path": "{d}", "template": "Q:"}, "{question}"),
    ("tasks.sources[0].config.split", {"path": "{d}", "split": "test"}, "split"),
    ("tasks.sources[0].config.colour", {"path": "{d}", "colour": 1}, "Extra"),
    ("tasks.eval_questions", {"path": "{d}"}, "held-out"),
    # real-model knobs
    ("model.gradient_checkpointing", {"model": {"gradient_checkpointing": "sometimes"}}, "boolean"),
    ("model.device", {"model": {"device": "tpu"}}, "mps"),
    ("model.lora_alpha", {"model": {"lora_alpha": 0}}, "greater than"),
    ("model.lora_dropout", {"model": {"lora_dropout": 1.5}}, "less than"),
    ("model.lora_target_modules", {"model": {"lora_target_modules": []}}, "at least one"),
    ("model.lora_target_modules", {"model": {"lora_target_modules": ["q proj"]}}, "module name"),
    ("model.lora_target_modules", {"model": {"lora_target_modules": "all"}}, "all-linear"),
    ("trainer.lr_schedule", {"trainer": {"lr_schedule": "step"}}, "cosine"),
    (
        "trainer.lr_schedule",
        {"trainer": {"lr_schedule": "cosine"}, "node": {"rounds": 0}},
        "node.rounds is 0",
    ),
    ("trainer.warmup_steps", {"trainer": {"warmup_steps": -1}}, "greater than"),
    ("trainer.warmup_steps", {"trainer": {"lr_schedule": "linear", "warmup_steps": 400}}, "fewer"),
    ("trainer.schedule_steps", {"trainer": {"schedule_steps": -5}}, "greater than"),
    ("trainer.mask_truncated_completions", {"trainer": {"mask_truncated_completions": "x"}}, "boolean"),
    ("model.dtype", {"model": {"dtype": "int8"}}, "bfloat16"),
]


@pytest.mark.parametrize(("field", "data", "words"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_bad_value_exits_2_naming_the_field(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    field: str,
    data: dict[str, Any],
    words: str,
) -> None:
    rows = tmp_path / "d.jsonl"
    rows.write_text("".join(json.dumps({"question": f"q{i}", "answer": "a"}) + "\n" for i in range(4)))
    if field.startswith("tasks.") and "source" not in json.dumps(data):
        data = _dataset(tmp_path, **{k: (str(rows) if v == "{d}" else v) for k, v in data.items()})
    code, _ = _check(tmp_path, data, monkeypatch)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert f"'{field}'" in err and words in err, err


def test_valid_dataset_and_knobs_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = tmp_path / "d.jsonl"
    rows.write_text("".join(json.dumps({"q": f"q{i}", "s": f"#### {i}"}) + "\n" for i in range(100)))
    data = _dataset(tmp_path, path=str(rows), question_field="q", answer_field="s", extract="gsm8k")
    data["model"] = {
        "device": "cpu",
        "dtype": "bfloat16",
        "gradient_checkpointing": True,
        "lora_rank": 4,
        "lora_alpha": 16,
        "lora_dropout": 0.05,
        "lora_target_modules": ["q_proj", "v_proj"],
    }
    data["trainer"] = {
        "lr_schedule": "cosine",
        "warmup_steps": 10,
        "schedule_steps": 100,
        "mask_truncated_completions": True,
    }
    data["node"] = {"rounds": 0}
    code, _ = _check(tmp_path, data, monkeypatch)
    assert code == 0


def test_the_real_command_exits_2_on_a_bad_dataset_key(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(_dataset(tmp_path, path=str(tmp_path / "absent.jsonl"))))
    res = run_cli("config", "check", str(f), timeout=120)
    assert res.returncode == 2, res.stderr
    assert "'tasks.sources[0].config.path'" in res.stderr and "Traceback" not in res.stderr
