"""Base class for config sections: strict (unknown keys rejected), documented fields."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A config section. Unknown keys are errors; every field carries a description used by ``init``."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())
