"""One error hierarchy for the whole library.

Services raise these; each surface maps them to its own contract's error body at
the ingress boundary (see ``visionserve.api.surface``). ``code`` is the stable,
machine-readable name; ``status`` the HTTP status; ``category`` the broad kind of
failure; ``retryable`` tells clients and workers whether the same request may succeed
later.

Failures have a public face and a private one: :func:`public_failure` turns any
exception into the :class:`PublicFailure` a client may see (a ``VisionServeError``
keeps its own message; anything else gets a generic message that names a log
reference) and logs the full exception under that reference. Never show
``str(exc)`` of an arbitrary exception to a client.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any, Literal

log = logging.getLogger(__name__)

# The broad kind of a failure, for clients deciding what to do about it.
FailureCategory = Literal[
    "invalid_input",
    "processing",
    "unauthorized",
    "not_found",
    "conflict",
    "rate_limited",
    "unavailable",
    "timeout",
    "cancelled",
    "internal",
]


class VisionServeError(Exception):
    code = "internal_error"
    status = 500
    category: FailureCategory = "internal"
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
    category: FailureCategory = "invalid_input"


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
    category: FailureCategory = "unauthorized"


class Forbidden(VisionServeError):
    code = "forbidden"
    status = 403
    category: FailureCategory = "unauthorized"


class NotFound(VisionServeError):
    code = "not_found"
    status = 404
    category: FailureCategory = "not_found"


class Conflict(VisionServeError):
    code = "conflict"
    status = 409
    category: FailureCategory = "conflict"


class PayloadTooLarge(VisionServeError):
    code = "payload_too_large"
    status = 413
    category: FailureCategory = "invalid_input"


class Unprocessable(VisionServeError):
    code = "processing_error"
    status = 422
    category: FailureCategory = "processing"


class RateLimited(VisionServeError):
    code = "rate_limited"
    status = 429
    category: FailureCategory = "rate_limited"
    retryable = True


class ServiceUnavailable(VisionServeError):
    code = "service_unavailable"
    status = 503
    category: FailureCategory = "unavailable"
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


@dataclass(frozen=True)
class PublicFailure:
    """What a client may see of a failure (docling-serve's ``PublicFailureInfo``).

    Attributes:
        message: Safe to show: an error's own message, or a generic one naming a log
            reference; never an arbitrary exception's text.
        code: The stable machine-readable name (``internal_error``, ``not_found``, ...).
        category: The broad kind of failure.
        retryable: Whether the same request may succeed later.
        status: The HTTP status it maps to.
    """

    message: str
    code: str
    category: FailureCategory
    retryable: bool
    status: int = 500

    def error(
        self, cls: type[VisionServeError] = VisionServeError, *, code: str | None = None
    ) -> VisionServeError:
        """This failure as an error to raise; ``cls`` and ``code`` re-tag it (e.g. per stage).

        A ``cls`` other than the base keeps its own status.
        """
        err = cls(self.message, code=code or self.code)
        err.category, err.retryable = self.category, self.retryable
        if cls is VisionServeError:
            err.status = self.status
        return err


# Serve's queue-full and Ray's replica-gone errors, by name: the library never imports Ray.
_AT_CAPACITY = frozenset({"BackPressureError", "DeploymentUnavailableError"})
# A replica, its worker or its node died under a call (and the objects it held with it).
_REPLICA_GONE = frozenset(
    {
        "RayActorError",
        "ActorDiedError",
        "ActorUnavailableError",
        "WorkerCrashedError",
        "NodeDiedError",
        "ObjectLostError",  # OwnerDiedError, ObjectReconstructionFailed*
    }
)


def replica_gone(exc: BaseException) -> bool:
    """Whether ``exc`` means a replica or its node died: the same call may succeed elsewhere."""
    return any(k.__name__ in _REPLICA_GONE for k in type(remote_cause(exc)).__mro__)


def _unavailable(cause: BaseException) -> bool:
    return type(cause).__name__ in _AT_CAPACITY or replica_gone(cause)


def cluster_failure(exc: BaseException) -> bool:
    """Whether the cluster failed, not the work: a replica or node lost, or Serve at capacity.

    Follows what ``exc`` was raised from, since callers wrap handle errors in their own.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _unavailable(remote_cause(current)):
            return True
        current = current.__cause__
    return False


def public_failure(
    exc: BaseException, *, ref: str | None = None, logger: logging.Logger | None = None
) -> PublicFailure:
    """The public face of ``exc``; the private one (the full exception) goes to the log.

    A :class:`VisionServeError`, also one raised in a Serve replica and wrapped by the
    handle (see :func:`remote_cause`), keeps its message, code, category and
    retryable. A timeout, a cancellation or Serve back-pressure get a fixed message of
    their own. Anything else is an internal error: the client gets a generic message
    that names ``ref`` and the log gets the exception with its traceback under it.

    Args:
        exc: What was raised.
        ref: Where to look in the log, e.g. ``"request 3f2a…"`` or ``"job 81c0…"``;
            a fresh ``"error <id>"`` when not given.
        logger: The logger to write to (the caller's); this module's by default.

    Returns:
        The failure to show the client and to store on a job or task.
    """
    cause = remote_cause(exc)
    logger = logger or log
    if isinstance(cause, VisionServeError):
        return PublicFailure(
            cause.message, cause.code, cause.category, cause.retryable, cause.status
        )
    ref = ref or f"error {uuid.uuid4().hex[:12]}"
    if isinstance(cause, TimeoutError):
        logger.warning("%s timed out: %r", ref, cause)
        return PublicFailure(
            f"Timed out while processing; see the server log for {ref}",
            "timeout",
            "timeout",
            True,
            504,
        )
    if isinstance(cause, asyncio.CancelledError):
        return PublicFailure("Processing was cancelled", "cancelled", "cancelled", False, 409)
    name = type(cause).__name__
    if _unavailable(cause):
        logger.warning("%s: a deployment is unavailable: %s", ref, name)
        message = (
            "The cluster is at capacity; retry shortly"
            if name in _AT_CAPACITY
            else "A model replica is unavailable; retry shortly"
        )
        return PublicFailure(message, "service_unavailable", "unavailable", True, 503)
    logger.error("%s failed", ref, exc_info=exc)
    return PublicFailure(
        f"Internal error while processing; see the server log for {ref}",
        "internal_error",
        "internal",
        False,
        500,
    )


def remote_message(exc: BaseException) -> str:
    """The public message of a replica's exception: ``public_failure(exc).message``."""
    return public_failure(exc).message


class JobCancelled(VisionServeError):
    """Raised inside a job handler when its job was cancelled."""

    code = "cancelled"
    status = 409
    category: FailureCategory = "cancelled"
