"""The base of every settings section: strict pydantic models (unknown keys rejected), patches that
override only the keys they set, and the error that lists every configuration problem at once.

Each part of the exporter owns its settings section (the rule engine its thresholds, the Datadog sink
its delivery settings, ...); exporter/config.py composes them into the Settings read from file and
environment.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, create_model


class ConfigError(Exception):
    """Invalid configuration; the message lists every problem, one per line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))


class Strict(BaseModel):
    # No setting means infinity or NaN (`.inf` in YAML would pass every `ge=` bound and stall a poll forever).
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def patch_of(model: type[BaseModel], doc: str, nullable: bool) -> type[BaseModel]:
    """The same keys with the same bounds, all optional: only keys written in a patch apply. With
    `nullable`, an explicit null is a value (for targets: no check); otherwise null is rejected."""
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        base = info.annotation | None if nullable else info.annotation
        annotation = Annotated[base, *info.metadata] if info.metadata else base
        fields[name] = (annotation, Field(None, description=info.description))
    return create_model(f"{model.__name__}Patch", __base__=Strict, __doc__=doc, **fields)
