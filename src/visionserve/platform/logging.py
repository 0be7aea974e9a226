"""Logging every process shares: the request id on each record, one setup call."""

from __future__ import annotations

import contextvars
import logging
import sys

# Set by the ingress middleware per request; "-" outside a request.
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

# Our top-level packages: the library and the Ray-side code around it.
PACKAGES = ("visionserve", "deployments", "graphs", "jobs")
FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def request_ref(fallback: str | None = None) -> str | None:
    """``"request <id>"`` inside a request (where to look in the log), else ``fallback``."""
    request_id = request_id_var.get()
    return f"request {request_id}" if request_id != "-" else fallback


class RequestIdLogFilter(logging.Filter):
    """Adds ``request_id`` to every log record (use ``%(request_id)s`` in formats)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def configure_logging(level: int = logging.INFO) -> None:
    """Our loggers write to stderr with the request id; idempotent (replicas call it at start).

    A Ray worker's root logger has no handler, so without one of our own anything
    below WARNING would be dropped; stderr lands in the replica's log file.
    """
    for name in PACKAGES:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        if not any(isinstance(f, RequestIdLogFilter) for f in logger.filters):
            logger.addFilter(RequestIdLogFilter())
        if not logger.handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.addFilter(RequestIdLogFilter())
            handler.setFormatter(logging.Formatter(FORMAT))
            logger.addHandler(handler)
            logger.propagate = False  # one line per record, whatever the root logger has
