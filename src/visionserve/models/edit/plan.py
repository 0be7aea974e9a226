"""A plan: the validated list of operations a prompt asks for."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, model_validator

from visionserve.models.edit.catalogue import validate_params

#: Most steps one plan may hold (bounds the work one prompt can ask for).
MAX_STEPS = 12


class Step(BaseModel):
    """One operation and its parameters, checked against the operation's model."""

    op: str
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> Step:
        # Defaults filled in, so two plans that mean the same compare equal.
        self.params = validate_params(self.op, self.params)
        return self


class Plan(BaseModel):
    """The steps to run in order, and the clauses no local operation matched."""

    steps: list[Step] = Field(default_factory=list, max_length=MAX_STEPS)
    unsupported: list[str] = Field(default_factory=list)

    def ops(self) -> list[str]:
        return [s.op for s in self.steps]
