"""Stored source and sink configs, parsed again where they are used."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from visionserve.errors import Unprocessable

M = TypeVar("M", bound=BaseModel)


def parse_config(model: type[M], config: dict[str, Any], kind: Literal["source", "sink"]) -> M:
    """``config`` as ``model``, or a 422 naming the first bad field.

    Raises:
        Unprocessable: code ``invalid_<kind>_config``.
    """
    try:
        return model.model_validate(config)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        raise Unprocessable(
            f"invalid {kind} config: {where}: {first['msg']}", code=f"invalid_{kind}_config"
        ) from None
