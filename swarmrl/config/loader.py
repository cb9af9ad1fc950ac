"""Load a NodeConfig from layers: defaults <- YAML file <- SWARMRL_* environment <- CLI overrides."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from swarmrl.config.model import NodeConfig
from swarmrl.errors import ConfigError

ENV_PREFIX = "SWARMRL_"

_HINTS = {
    "extra_forbidden": "remove it or check its spelling (`swarm-node init` writes every valid key)",
    "missing": "add it",
    "greater_than": "use a larger value",
    "greater_than_equal": "use a larger value",
    "less_than": "use a smaller value",
    "less_than_equal": "use a smaller value",
    "literal_error": "use one of the allowed values",
}


def _loc_to_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<root>"


def format_validation_error(exc: ValidationError) -> ConfigError:
    """Turn pydantic's first error into a one-line ConfigError naming the field path and a fix."""
    err = exc.errors()[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    path = _loc_to_path(loc)
    msg = str(err["msg"]).removeprefix("Value error, ")
    value = err.get("input")
    shown = "" if err["type"] == "missing" or isinstance(value, dict) else f" (got {value!r})"
    hint = _HINTS.get(str(err["type"]))
    return ConfigError(path, f"{msg}{shown}" + (f"; fix: {hint}" if hint else ""))


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = [p for p in dotted.split(".") if p]
    if not parts:
        raise ConfigError(dotted or "<root>", "empty key")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``section.field=value`` (value read as YAML) into a dotted key and a value."""
    if "=" not in text:
        raise ConfigError(text, "override must look like section.field=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError as exc:
        raise ConfigError(key.strip(), f"value {raw!r} is not valid YAML: {exc}") from None
    return key.strip(), value


def env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """SWARMRL_TRAINER__LR=1e-3 -> {"trainer.lr": 0.001}. Variables without '__' are not config."""
    out: dict[str, Any] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        dotted = name[len(ENV_PREFIX) :].lower().replace("__", ".")
        try:
            out[dotted] = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            out[dotted] = raw
    return out


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError("--config", f"file '{path}' does not exist; create one with `swarm-node init`")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError("--config", f"'{path}'{where} is not valid YAML; fix the syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("<root>", f"'{path}' must hold a mapping of sections, got {type(data).__name__}")
    return data


def load_config(
    path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> NodeConfig:
    """Build a validated NodeConfig. Raises ConfigError naming the first bad field."""
    tree: dict[str, Any] = read_yaml(path) if path is not None else {}
    layered = dict(env_overrides(os.environ if env is None else env))
    layered.update(overrides or {})
    for dotted, value in layered.items():
        if value is not None:
            _set_dotted(tree, dotted, value)
    try:
        return NodeConfig.model_validate(tree)
    except ValidationError as exc:
        raise format_validation_error(exc) from None


def _yaml_scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def _dump_model(model: BaseModel, indent: int, lines: list[str]) -> None:
    pad = "  " * indent
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if info.description:
            lines.append(f"{pad}# {info.description}")
        if isinstance(value, BaseModel):
            lines.append(f"{pad}{name}:")
            _dump_model(value, indent + 1, lines)
        else:
            plain = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
            if isinstance(plain, list) and plain and isinstance(plain[0], BaseModel):
                plain = [v.model_dump(mode="json") for v in plain]
            if isinstance(plain, Path):
                plain = str(plain)
            if isinstance(plain, (list, dict)) and plain:
                dumped = yaml.safe_dump({name: plain}, sort_keys=False, default_flow_style=False)
                lines.extend(pad + line for line in dumped.rstrip().splitlines())
            else:
                lines.append(f"{pad}{name}: {_yaml_scalar(plain)}")


def dump_commented_yaml(cfg: NodeConfig) -> str:
    """The config as YAML with every field's description as a comment above it."""
    lines = ["# swarm-node configuration. Validate with `swarm-node config check FILE`.", ""]
    for name in type(cfg).model_fields:
        section = getattr(cfg, name)
        doc = (type(section).__doc__ or "").strip().splitlines()
        if doc and not doc[0].startswith("A config section"):
            lines.append(f"# {doc[0]}")
        lines.append(f"{name}:")
        _dump_model(section, 1, lines)
        lines.append("")
    return "\n".join(lines)
