"""Schemathesis over every surface's OpenAPI document, against the in-process app.

Each operation gets a bounded number of generated requests (derandomised, so a CI
run is reproducible) and two checks: no 5xx, and every response conforms to the
schema the document declares for its status. Each surface runs on its own database
(the ``settings`` fixture gives every test a fresh one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from tests.fuzz.apps import SURFACE_APPS, Built
from visionserve.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

EXAMPLES_PER_OPERATION = 25
CHECKS = [not_a_server_error, response_schema_conformance]


def fuzz_operation(operation: Any, built: Built, examples: int) -> int:
    """Up to ``examples`` generated requests to one operation; returns how many ran.

    Raises:
        Exception: schemathesis's report of the first failing (shrunk) example.
    """
    sent = 0

    @given(case=operation.as_strategy())
    @hyp_settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        nonlocal sent
        sent += 1
        response = case.call(headers=built.headers)
        case.validate_response(response, checks=CHECKS, headers=built.headers)

    run()
    return sent


def fuzz(built: Built, examples: int) -> tuple[int, list[str]]:
    """Run every operation of one surface; returns (requests sent, failures as text)."""
    schema = schemathesis.openapi.from_asgi(f"{built.mount}/openapi.json", built.app)
    sent = 0
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        try:
            sent += fuzz_operation(operation, built, examples)
        except Exception as exc:
            failures.append(f"{operation.verbose_name}: {str(exc).strip()[:1500]}")
    return sent, failures


@pytest.mark.parametrize("surface", sorted(SURFACE_APPS))
def test_no_server_errors_and_no_schema_mismatches(surface: str, settings: Settings) -> None:
    builder: Callable[[Settings], Built] = SURFACE_APPS[surface]
    built = builder(settings)
    sent, failures = fuzz(built, EXAMPLES_PER_OPERATION)
    print(f"{surface}: {sent} generated requests, {len(failures)} failing operations")
    assert sent > 0
    assert not failures, "\n\n".join(failures)
