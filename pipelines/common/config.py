"""The base of every typed config in the project."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class StrictModel(BaseModel):
    """Config objects reject unknown keys so a typo in YAML fails at start, not silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def tiny_model_field(folder_field: str) -> Any:
    """The ``tiny_model`` option of a model config, whose checkpoint folder is the field ``folder_field``."""
    return Field(
        default=None,
        description=f"A tiny offline model that the serving layer builds into `{folder_field}` before loading, if "
        "missing (local profile, tests; see `pipelines.tiny.provision`). The loader itself only reads it.",
    )
