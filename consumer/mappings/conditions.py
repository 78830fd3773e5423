"""Conditions on event fields: comparisons combined with all / any / not (compiled by `match`)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import Discriminator, Field, Tag, model_validator

from consumer.events.model import JSON
from consumer.mappings.fields import DottedPath, Model, rule

_OPERATORS = ("equals", "not_equals", "in", "not_in", "exists", "gt", "gte", "lt", "lte", "contains",
              "matches")  # fmt: skip


class Comparison(Model):
    """Compare the value at a dotted path; exactly one operator."""

    path: DottedPath
    equals: JSON = None
    not_equals: JSON = None
    in_: list[JSON] | None = Field(default=None, alias="in")
    not_in: list[JSON] | None = None
    exists: bool | None = None
    gt: float | str | None = None
    gte: float | str | None = None
    lt: float | str | None = None
    lte: float | str | None = None
    contains: JSON = None
    matches: re.Pattern[str] | None = None

    @model_validator(mode="after")
    def _one_operator(self) -> Comparison:
        given = [f for f in self.operators if f]
        if len(given) != 1:
            raise rule(
                f"a comparison needs exactly one operator, found {len(given)}",
                f"use one of {', '.join(_OPERATORS)} next to `path`",
            )
        return self

    @property
    def operators(self) -> list[str]:
        names = {"in_": "in"}
        return [names.get(f, f) for f in self.model_fields_set if f != "path"]

    @property
    def operator(self) -> str:
        return self.operators[0]


class AllOf(Model):
    all: list[Condition] = Field(min_length=1)


class AnyOf(Model):
    any: list[Condition] = Field(min_length=1)


class NotOf(Model):
    not_: Condition = Field(alias="not")


def _condition_tag(value: Any) -> str:
    if isinstance(value, dict):
        for key in ("all", "any", "not"):
            if key in value:
                return "=" + key
    elif isinstance(value, AllOf | AnyOf | NotOf):
        return "=" + type(value).__name__.lower()[:3]
    return "=cmp"


Condition = Annotated[
    Annotated[Comparison, Tag("=cmp")] | Annotated[AllOf, Tag("=all")] | Annotated[AnyOf, Tag("=any")]
    | Annotated[NotOf, Tag("=not")],
    Discriminator(_condition_tag),
]  # fmt: skip
