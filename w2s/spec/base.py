"""`Strict`: the base of every spec model; unknown keys are errors, numbers finite, specs immutable,
and a number field takes numbers only: YAML 1.1 reads yes/no/on/off as booleans, which pydantic would
otherwise turn into 1 and 0 (`eval_every: yes` would evaluate after every step)."""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for name, value in data.items():
            field = cls.model_fields.get(name)
            if field is None or _takes(field.annotation, bool) or not _takes_number(field.annotation):
                continue
            if any(isinstance(v, bool) for v in (value if isinstance(value, (list, tuple)) else [value])):
                raise ValueError(f"{name}: a number, not {str(value).lower()} (YAML reads yes/no/on/off as true/false)")
        return data


def _args(annotation) -> list:
    """Every type an annotation names, through unions, Annotated, list[...] and the like."""
    found = [annotation]
    for arg in typing.get_args(annotation):
        found += _args(arg)
    return found


def _takes(annotation, kind) -> bool:
    return annotation is Any or any(a is kind or a is Any for a in _args(annotation))


def _takes_number(annotation) -> bool:
    return any(a in (int, float) for a in _args(annotation))
