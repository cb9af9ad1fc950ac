"""The ``dataset`` task source: questions and answers from the user's own file.

Reads JSON Lines, CSV (standard library only), Parquet (needs ``pyarrow``) and directories written by
``datasets.Dataset.save_to_disk`` (needs ``datasets``). Configuration (``tasks.sources[i].config``):

``path`` (required; relative paths are relative to the working directory), ``format``
(``auto|jsonl|csv|parquet|arrow``), ``question_field`` and ``answer_field`` (column names), ``extract``
(``exact|numeric|gsm8k|boxed``, see ``extract.py``), ``template`` (the prompt, ``{question}`` is replaced by the
question) and ``split`` (for a saved ``DatasetDict``; default ``train``).

A task's ``TaskRef`` is ``(dataset, <digest>, 0, <row>)`` where the digest is a hash of the file's contents
(SHA-256 of its bytes, or of every file of a saved directory) together with the options that change what is read
from it (fields, extraction, template, split) -- never its path, so two nodes holding the same file anywhere
regenerate the same question and answer, and a node holding another version of it (or none) cannot, which the
receive path counts as ``unverifiable_dataset``. Rows do not depend on a seed, so the ref's seed is 0.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from swarmrl.errors import InvalidValue, TaskConfigError, TaskError
from swarmrl.protocol.types import config_digest
from swarmrl.tasks.base import Task, TaskSource
from swarmrl.tasks.extract import gold_answer, matches

SUFFIXES: dict[str, str] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


class DatasetOptions(BaseModel):
    """The ``config`` of a ``dataset`` task source (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1, description="The data file or saved-dataset directory.")
    format: Literal["auto", "jsonl", "csv", "parquet", "arrow"] = Field(
        "auto", description="File format; 'auto' decides by the file suffix (a directory is 'arrow')."
    )
    question_field: str = Field("question", min_length=1, description="Column holding the question.")
    answer_field: str = Field("answer", min_length=1, description="Column holding the gold answer.")
    extract: Literal["exact", "numeric", "gsm8k", "boxed"] = Field(
        "exact", description="How the gold answer is read from its column and compared with a completion's."
    )
    template: str = Field("{question}", description="The prompt; '{question}' is replaced by the question.")
    split: str = Field("", description="Split of a saved DatasetDict ('' = 'train').")

    @field_validator("template")
    @classmethod
    def _has_question(cls, value: str) -> str:
        if "{question}" not in value:
            raise InvalidValue("must contain '{question}'")
        return value


def parse_options(config: dict[str, Any]) -> DatasetOptions:
    """Validated options; TaskConfigError naming ``config.<key>`` otherwise."""
    try:
        return DatasetOptions.model_validate(config)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        got = err.get("input")
        shown = "" if err["type"] == "missing" else f" (got {got!r})"
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise TaskConfigError(f"config.{loc}" if loc else "config", f"{msg}{shown}") from None


def content_hash(path: Path) -> str:
    """SHA-256 of a file's bytes, or of every file (relative name and bytes) under a directory."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if f is not path:
            name = f.relative_to(path).as_posix().encode()
            h.update(len(name).to_bytes(4, "big") + name)
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _format(path: Path, declared: str) -> str:
    if declared != "auto":
        return declared
    if path.is_dir():
        return "arrow"
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise TaskConfigError(
            "config.format",
            f"cannot tell the format of '{path.name}' from its suffix; set it to jsonl, csv, parquet or arrow",
        )
    return fmt


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8-sig") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TaskConfigError(
                    "config.path", f"'{path}' line {line_no} is not JSON: {exc.msg}"
                ) from None
            if not isinstance(row, dict):
                raise TaskConfigError("config.path", f"'{path}' line {line_no} is not a JSON object")
            yield row


def _csv(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        yield from csv.DictReader(fh)


def _columns(rows: Iterator[dict[str, Any]], fields: tuple[str, str]) -> tuple[list[Any], list[Any]]:
    questions: list[Any] = []
    answers: list[Any] = []
    for row in rows:
        questions.append(row.get(fields[0]))
        answers.append(row.get(fields[1]))
    return questions, answers


def _parquet(path: Path, fields: tuple[str, str]) -> tuple[list[Any], list[Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise TaskError(
            "reading Parquet files needs pyarrow: pip install 'swarmrl[data]' (or pyarrow); "
            "JSONL and CSV need nothing extra"
        ) from None
    names = pq.read_schema(path).names
    _require_columns(path, names, fields)
    table = pq.read_table(path, columns=list(dict.fromkeys(fields)))
    return table.column(fields[0]).to_pylist(), table.column(fields[1]).to_pylist()


def _arrow_dir(path: Path, fields: tuple[str, str], split: str) -> tuple[list[Any], list[Any]]:
    try:
        import datasets
    except ImportError:
        raise TaskError(
            "reading a saved dataset directory needs the datasets library: pip install 'swarmrl[data]' "
            "(or datasets); JSONL and CSV need nothing extra"
        ) from None
    try:
        loaded: Any = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise TaskConfigError("config.path", f"'{path}' is not a saved dataset directory: {exc}") from None
    if isinstance(loaded, datasets.DatasetDict):
        name = split or "train"
        if name not in loaded:
            raise TaskConfigError(
                "config.split", f"'{path}' has no split '{name}'; its splits: {', '.join(loaded)}"
            )
        loaded = loaded[name]
    elif split:
        raise TaskConfigError("config.split", f"'{path}' is a single dataset without splits; remove split")
    _require_columns(path, list(loaded.column_names), fields)
    return list(loaded[fields[0]]), list(loaded[fields[1]])


def _require_columns(path: Path, names: list[str], fields: tuple[str, str]) -> None:
    for key, name in zip(("question_field", "answer_field"), fields, strict=True):
        if name not in names:
            raise TaskConfigError(
                f"config.{key}", f"'{path.name}' has no column '{name}'; its columns: {', '.join(names)}"
            )


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else str(value)


class DatasetSource(TaskSource):
    """Rows of a local file as tasks; ``size`` is the number of rows (``tasks.size`` does not apply)."""

    source = "dataset"
    #: The rows come from a file: a ref this node cannot regenerate is "not held here", not a forgery.
    file_backed = True

    def __init__(self, dataset: str, config: dict[str, Any], seed: int, size: int) -> None:
        super().__init__(dataset, config, 0, size)
        opts = parse_options(config)
        self.options = opts
        path = Path(opts.path).expanduser()
        if not path.exists():
            raise TaskConfigError(
                "config.path", f"'{opts.path}' does not exist (relative paths start at {Path.cwd()})"
            )
        fmt = _format(path, opts.format)
        if fmt == "arrow" and not path.is_dir():
            raise TaskConfigError(
                "config.format", f"'arrow' needs a directory written by save_to_disk: {path}"
            )
        if fmt != "arrow" and not path.is_file():
            raise TaskConfigError("config.path", f"'{path}' is a directory; use format arrow or name a file")
        if opts.split and fmt != "arrow":
            raise TaskConfigError(
                "config.split", f"only saved dataset directories have splits, not {fmt} files"
            )
        fields = (opts.question_field, opts.answer_field)
        if fmt == "jsonl":
            raw_q, raw_a = _columns(_jsonl(path), fields)
        elif fmt == "csv":
            raw_q, raw_a = _columns(_csv(path), fields)
        elif fmt == "parquet":
            raw_q, raw_a = _parquet(path, fields)
        else:
            raw_q, raw_a = _arrow_dir(path, fields, opts.split)
        if not raw_q:
            raise TaskConfigError("config.path", f"'{path}' has no rows")
        self.questions: list[str] = []
        self.answers: list[str] = []
        for row, (q, a) in enumerate(zip(raw_q, raw_a, strict=True)):
            q_text, a_text = _text(q), _text(a)
            if not q_text:
                raise TaskConfigError(
                    "config.question_field", f"row {row} of '{path.name}' has no '{opts.question_field}'"
                )
            if a_text is None:
                raise TaskConfigError(
                    "config.answer_field", f"row {row} of '{path.name}' has no '{opts.answer_field}'"
                )
            try:
                gold = gold_answer(a_text, opts.extract)
            except TaskError as exc:
                raise TaskConfigError("config.extract", f"row {row} of '{path.name}': {exc}") from None
            self.questions.append(opts.template.replace("{question}", q_text))
            self.answers.append(gold)
        self.path = path
        self.format = fmt
        self.size = len(self.questions)
        self.content_sha256 = content_hash(path)
        self.digest = config_digest(
            {
                "sha256": self.content_sha256,
                "question_field": opts.question_field,
                "answer_field": opts.answer_field,
                "extract": opts.extract,
                "template": opts.template,
                "split": opts.split,
            }
        )

    def get(self, index: int) -> Task:
        index %= self.size
        gold, mode = self.answers[index], self.options.extract

        def scorer(answer_text: str) -> float:
            return 1.0 if matches(answer_text, gold, mode) else 0.0

        return Task(
            self.questions[index],
            gold,
            self.ref(index),
            family=self.dataset,
            metadata={"row": index},
            scorer=scorer,
        )
