"""The five product surfaces, each served under its own mount with its contract's conventions."""

from __future__ import annotations

from visionserve.api.surface import Surface
from visionserve.api.surfaces import cutout, documents, edit, extract, inspect

SURFACES: dict[str, Surface] = {
    s.name: s
    for s in (cutout.SURFACE, documents.SURFACE, extract.SURFACE, inspect.SURFACE, edit.SURFACE)
}
