"""Node configuration: pydantic models, loading (defaults <- YAML <- SWARMRL_* env <- flags) and errors.

A leaf package: imports pydantic and yaml only, never torch or the runtime.
"""

from swarmrl.config.loader import (
    dump_commented_yaml,
    format_validation_error,
    load_config,
    parse_override,
)
from swarmrl.config.model import NodeConfig

__all__ = ["NodeConfig", "dump_commented_yaml", "format_validation_error", "load_config", "parse_override"]
