"""The product surfaces: one package each (routes, schemas, service, jobs, records).

A surface package's ``SURFACE`` describes how it is served; its optional ``jobs``
module registers the durable job kinds its workers run. Surfaces never import
each other: what they share lives in ``visionserve.platform`` and ``visionserve.store``.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from visionserve.api.surface import Surface

NAMES = ("cutout", "documents", "extract", "inspect", "edit")


def load_surface(name: str) -> Surface:
    """The ``SURFACE`` of ``visionserve.surfaces.<name>``."""
    if name not in NAMES:
        raise ValueError(f"unknown surface {name!r}; known: {', '.join(NAMES)}")
    return importlib.import_module(f"{__name__}.{name}").SURFACE  # type: ignore[no-any-return]


def _modules(names: tuple[str, ...] | list[str], leaf: str) -> list[str]:
    modules = [f"{__name__}.{name}.{leaf}" for name in names]
    return [m for m in modules if importlib.util.find_spec(m) is not None]


def job_modules(names: tuple[str, ...] | list[str]) -> list[str]:
    """The ``jobs`` modules of the named surfaces (those that have one)."""
    return _modules(names, "jobs")


def import_records(names: tuple[str, ...] | list[str] = NAMES) -> None:
    """Import every surface's tables, so that ``Base.metadata`` knows them all."""
    for module in _modules(names, "records"):
        importlib.import_module(module)
