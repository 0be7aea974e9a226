"""The HTTP ingress: a FastAPI app factory with one sub-application per surface."""

from visionserve.api.app import create_app
from visionserve.api.surface import Surface

__all__ = ["Surface", "create_app"]
