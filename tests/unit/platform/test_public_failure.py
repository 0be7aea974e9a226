"""errors.public_failure: the public face of any exception, the private one in the log."""

from __future__ import annotations

import logging

import pytest

from visionserve.errors import (
    NotFound,
    RateLimited,
    Unprocessable,
    VisionServeError,
    public_failure,
    remote_message,
)


class RayTaskError(Exception):
    """What a Serve handle raises for a replica's exception: the original is ``cause``."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"Traceback (most recent call last): ...\n{cause!r}")
        self.cause = cause


class BackPressureError(Exception):
    pass


@pytest.mark.parametrize("wrap", [False, True])
def test_our_errors_keep_their_own_face(wrap: bool) -> None:
    err = RateLimited("slow down", code="rate_limit_exceeded")
    failure = public_failure(RayTaskError(err) if wrap else err)
    assert failure.message == "slow down" and failure.code == "rate_limit_exceeded"
    assert (failure.category, failure.retryable, failure.status) == ("rate_limited", True, 429)
    assert public_failure(NotFound("no such job")).category == "not_found"


@pytest.mark.parametrize("wrap", [False, True])
def test_anything_else_is_internal_and_logged_under_its_reference(wrap, library_log) -> None:  # type: ignore[no-untyped-def]
    exc = RuntimeError("/secret/server/path kaput")
    failure = public_failure(RayTaskError(exc) if wrap else exc, ref="job j-1")
    assert failure.message == "Internal error while processing; see the server log for job j-1"
    assert (failure.code, failure.category, failure.retryable) == (
        "internal_error",
        "internal",
        False,
    )
    (record,) = library_log.records
    assert record.levelno == logging.ERROR and "job j-1" in record.getMessage()
    assert record.exc_info and "/secret/server/path kaput" in library_log.text
    # Without a reference, one is made up so the message and the log still meet.
    anonymous = public_failure(ValueError("x"))
    ref = anonymous.message.rsplit("for ", 1)[1]
    assert ref.startswith("error ") and ref in library_log.records[-1].getMessage()
    assert remote_message(exc).startswith("Internal error") and "kaput" not in remote_message(exc)


def test_timeouts_and_back_pressure_have_fixed_messages() -> None:
    timeout = public_failure(TimeoutError("deadline at /secret"))
    assert (timeout.category, timeout.retryable, timeout.status) == ("timeout", True, 504)
    assert "/secret" not in timeout.message
    busy = public_failure(RayTaskError(BackPressureError("queue of replica-7 full")))
    assert (busy.category, busy.retryable, busy.status) == ("unavailable", True, 503)
    assert busy.message == "The cluster is at capacity; retry shortly"


def test_a_failure_becomes_an_error_to_raise_again() -> None:
    failure = public_failure(RuntimeError("x"), ref="request r")
    err = failure.error()
    assert type(err) is VisionServeError and err.status == 500 and err.message == failure.message
    tagged = failure.error(Unprocessable, code="bg_removal_failed")
    assert (tagged.status, tagged.code, tagged.category) == (422, "bg_removal_failed", "internal")
