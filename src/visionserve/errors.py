"""One error hierarchy for the whole library.

Services raise these; each surface maps them to its own contract's error body at
the ingress boundary (see ``visionserve.api.surface``). ``code`` is the stable,
machine-readable name; ``status`` the HTTP status; ``retryable`` tells clients
and workers whether the same request may succeed later.
"""

from __future__ import annotations

from typing import Any


class VisionServeError(Exception):
    code = "internal_error"
    status = 500
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details or {}
        self.headers = headers or {}


class BadRequest(VisionServeError):
    code = "validation_error"
    status = 400


class MissingInput(BadRequest):
    code = "missing_image"


class InvalidFormat(BadRequest):
    code = "invalid_format"


class InvalidImage(BadRequest):
    """Truncated, corrupt, empty or decompression-bomb images."""

    code = "invalid_image"


class EgressRefused(BadRequest):
    """A URL the egress policy refuses (private network, bad scheme)."""

    code = "url_not_allowed"


class FetchFailed(BadRequest):
    """A URL that could not be fetched (unreachable, error status, too large)."""

    code = "url_unreachable"


class Unauthorized(VisionServeError):
    code = "unauthorized"
    status = 401


class Forbidden(VisionServeError):
    code = "forbidden"
    status = 403


class NotFound(VisionServeError):
    code = "not_found"
    status = 404


class Conflict(VisionServeError):
    code = "conflict"
    status = 409


class PayloadTooLarge(VisionServeError):
    code = "payload_too_large"
    status = 413


class Unprocessable(VisionServeError):
    code = "processing_error"
    status = 422


class RateLimited(VisionServeError):
    code = "rate_limited"
    status = 429
    retryable = True


class ServiceUnavailable(VisionServeError):
    code = "service_unavailable"
    status = 503
    retryable = True


class UnknownModel(BadRequest):
    """A model name that no registry knows; the message lists the valid names."""

    code = "unknown_model"

    def __init__(self, name: str, valid: list[str]) -> None:
        super().__init__(
            f"unknown model {name!r}; valid: {', '.join(sorted(valid)) or '(none enabled)'}",
            details={"received": name, "valid": sorted(valid)},
        )


def remote_cause(exc: BaseException) -> BaseException:
    """What a Serve replica raised: handles wrap it (``RayTaskError.cause``)."""
    return getattr(exc, "cause", None) or exc


def remote_message(exc: BaseException) -> str:
    """A one-line message for a replica's exception, without the remote traceback."""
    cause = remote_cause(exc)
    lines = str(getattr(cause, "message", "") or cause).strip().splitlines()
    return lines[-1] if lines else type(cause).__name__


class JobCancelled(VisionServeError):
    """Raised inside a job handler when its job was cancelled."""

    code = "cancelled"
    status = 409
