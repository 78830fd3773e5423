"""What makes a mapping fire: an event, an audience, a journey step or a computed trait, plus conditions."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, WithJsonSchema, field_validator, model_validator

from consumer.mappings.conditions import Condition
from consumer.mappings.fields import Model, rule


class AudienceTrigger(Model):
    key: str = Field(min_length=1, description="the audience's computation key, e.g. cart_abandoners_7d")
    # Not `on`: YAML 1.1 reads a bare `on` key as the boolean true.
    membership: Literal["entered", "exited", "any"] = "entered"


class JourneyTrigger(Model):
    id: str | None = Field(default=None, min_length=1, description="journey_metadata.journey_id")
    step_key: str | None = Field(default=None, min_length=1, description="context.personas.computation_key")
    step_id: str | None = Field(default=None, min_length=1, description="journey_metadata.step_id")

    @model_validator(mode="after")
    def _something(self) -> JourneyTrigger:
        if not (self.id or self.step_key or self.step_id):
            raise rule(
                "a journey trigger needs id, step_key or step_id", "add `step_key` (or `id`/`step_id`)"
            )
        return self


class ComputedTraitTrigger(Model):
    key: str = Field(min_length=1)


EventType = Literal["track", "identify", "page", "screen", "group", "alias"]


class Trigger(Model):
    """What makes a mapping fire: one of event / audience / journey / computed_trait, plus conditions."""

    type: EventType | None = None
    event: Annotated[
        tuple[str, ...] | None,
        WithJsonSchema(
            {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]}
        ),
    ] = Field(default=None, min_length=1, description="track event name(s)")
    audience: AudienceTrigger | None = None
    journey: JourneyTrigger | None = None
    computed_trait: ComputedTraitTrigger | None = None
    conditions: Condition | None = None
    max_fallback_depth: int = Field(
        default=0, ge=0, le=5,
        description="for triggers on status events (Message Undelivered, …): how many fallbacks deep the "
        "reported message may be. 0: only messages of ordinary events, so a fallback never triggers another",
    )  # fmt: skip

    @field_validator("event", mode="before")
    @classmethod
    def _names(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_kind(self) -> Trigger:
        kinds = [
            k for k in ("event", "audience", "journey", "computed_trait") if getattr(self, k) is not None
        ]
        if len(kinds) > 1:
            raise rule(
                f"a trigger takes one of event, audience, journey, computed_trait; found {', '.join(kinds)}",
                "split it into one mapping per trigger, or move the extra test into `conditions`",
            )
        if not kinds and self.type is None:
            raise rule(
                "the trigger matches nothing",
                "add `event`, `audience`, `journey`, `computed_trait` or `type`",
            )
        if self.event is not None and self.type not in (None, "track"):
            raise rule("`event` names track events", "remove `type` or set it to track")
        return self
